"""Small previews of stored images, for the web page and the HTML reports."""

from __future__ import annotations

import io

from PIL import Image

from index.errors import ImageDecodeError
from index.model.imaging import open_image, to_rgb

THUMBNAIL_SIZE = 256


def make_thumbnail(data: bytes, size: int = THUMBNAIL_SIZE, max_pixels: int = 200_000_000) -> bytes:
    """A JPEG whose longer side is at most `size` pixels, upright (EXIF orientation applied).

    Raises:
        ImageDecodeError, ImageTooLarge: `data` is not a usable image.
    """
    img = open_image(data, max_pixels)
    # JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale when that is still at least `size`: far less work.
    img.draft("RGB", (size, size))
    try:
        rgb = to_rgb(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"unreadable image: {exc}") from exc
    rgb.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()

"""Small previews of stored images, for the web page and the HTML reports."""

from __future__ import annotations

import io

from PIL import Image

from index.model.imaging import DecodeBudget, decode_upright

THUMBNAIL_SIZE = 256


def make_thumbnail(
    data: bytes, size: int = THUMBNAIL_SIZE, max_pixels: int = 200_000_000, budget: DecodeBudget | None = None
) -> bytes:
    """A JPEG whose longer side is at most `size` pixels, upright (EXIF orientation applied), decoded within
    `budget` like the model's input.

    Raises:
        ImageDecodeError, ImageTooLarge, DecodeBusy: `data` is not a usable image, or cannot be decoded now
            (see `decode_upright`).
    """

    def encode(img: Image.Image) -> bytes:
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
        return out.getvalue()

    return decode_upright(data, max_pixels, encode, draft_size=size, budget=budget)[2]

"""Decoding untrusted image bytes and turning them into the model's input crop."""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from index.errors import ImageDecodeError, ImageTooLarge, ImgsimError, UnsupportedImageFormat
from index.model.registry import Preprocessing

if TYPE_CHECKING:
    import torch

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
_EXIF_ORIENTATION = 0x0112
# Our own pixel limit is checked before decoding; Pillow's bomb check stays as a second line behind it.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 200_000_000)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image ready for the model, with what the store records about it."""

    sha256: str
    byte_size: int
    width: int
    height: int
    format: str
    crop: NDArray[np.uint8] | torch.Tensor  # (size, size, 3) RGB uint8; a tensor when decoded on a device


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open `data` lazily and check format and size from the header, before any pixel is decoded.

    Raises:
        ImageDecodeError: empty or not an image.
        UnsupportedImageFormat: an image format outside ACCEPTED_FORMATS.
        ImageTooLarge: width x height above `max_pixels`.
    """
    if not data:
        raise ImageDecodeError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses these from the header alone, before our own check can see the size.
        limit = Image.MAX_IMAGE_PIXELS
        raise ImageTooLarge(f"image has more than {limit} pixels; the limit is {max_pixels}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not a recognised image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"unreadable image: {exc}") from exc
    if img.format not in ACCEPTED_FORMATS:
        raise UnsupportedImageFormat(f"unsupported image format {img.format}")
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageDecodeError("image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode Pillow decodes (palette, alpha, CMYK, 16-bit, float) to 8-bit RGB, upright per EXIF."""
    img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and float greyscale: convert("L") would clip, so rescale the real range to 0..255.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def model_crop(img: Image.Image, pre: Preprocessing) -> NDArray[np.uint8]:
    """Resize the shorter side to `pre.resize` and centre-crop `pre.input_size`, in one resampling step.

    Equivalent to timm's eval transform (resize, then centre crop) but resamples only the cropped region.
    """
    size = pre.input_size
    width, height = img.size
    scale = pre.resize / min(width, height)
    # The crop window in source pixels: `size` target pixels are `size / scale` source pixels.
    crop_w, crop_h = min(width, size / scale), min(height, size / scale)
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    out = img.resize(
        (size, size),
        _RESAMPLING.get(pre.interpolation, Image.Resampling.BICUBIC),
        box=(left, top, left + crop_w, top + crop_h),
        reducing_gap=None,
    )
    return np.asarray(out, dtype=np.uint8)


def decode_for_model(data: bytes, pre: Preprocessing, max_pixels: int, sha256: str | None = None) -> DecodedImage:
    """Validate, decode and crop one image. JPEGs are decoded at a reduced scale when they are much larger.

    Raises:
        ImageDecodeError, UnsupportedImageFormat, ImageTooLarge: see `open_image`.
    """
    img = open_image(data, max_pixels)
    fmt = str(img.format)
    width, height = img.size
    try:
        if img.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):
            # Stored sideways and shown upright (as the crop is): record the size as shown.
            width, height = height, width
        if fmt in ("JPEG", "MPO"):
            # DCT-domain downscaling: decode at 1/2, 1/4 or 1/8 scale while both sides stay >= the resize
            # target, which costs a fraction of a full decode and barely changes the final crop.
            img.draft("RGB", (pre.resize, pre.resize))
        rgb = to_rgb(img)
        crop = model_crop(rgb, pre)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from exc
    return DecodedImage(
        sha256=sha256 or sha256_hex(data),
        byte_size=len(data),
        width=width,
        height=height,
        format=fmt,
        crop=crop,
    )


def decode_jpegs_on_device(
    items: Sequence[tuple[bytes, str]], pre: Preprocessing, max_pixels: int, device: torch.device
) -> list[DecodedImage | ImgsimError]:
    """Decode a batch of JPEGs with torchvision (nvJPEG on a CUDA device) and resize and crop them there, so
    the crops never leave the device. Each item is (bytes, sha256); results come in the same order.

    Headers are still checked with Pillow first (format, pixel limit). Other formats, and JPEGs the device
    decoder refuses (CMYK, say), go through `decode_for_model`; a broken image becomes its error in its slot.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2.functional import resized_crop

    out: list[DecodedImage | ImgsimError | None] = [None] * len(items)
    todo: list[int] = []
    for pos, (data, sha) in enumerate(items):
        try:
            if open_image(data, max_pixels).format in ("JPEG", "MPO"):
                todo.append(pos)
            else:
                out[pos] = decode_for_model(data, pre, max_pixels, sha256=sha)
        except ImgsimError as exc:
            out[pos] = exc
    size, interpolation = pre.input_size, InterpolationMode(pre.interpolation)
    for pos in todo:
        data, sha = items[pos]
        try:
            encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            chw = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
        except RuntimeError:
            try:
                out[pos] = decode_for_model(data, pre, max_pixels, sha256=sha)
            except ImgsimError as exc:
                out[pos] = exc
            continue
        assert isinstance(chw, torch.Tensor)
        height, width = int(chw.shape[1]), int(chw.shape[2])
        # The same window as `model_crop`: shorter side to `pre.resize`, centre `size` x `size`.
        side = min(width, height) * size / pre.resize
        crop_w, crop_h = min(width, round(side)), min(height, round(side))
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        crop = resized_crop(chw, top, left, crop_h, crop_w, [size, size], interpolation, antialias=True)
        out[pos] = DecodedImage(sha, len(data), width, height, "JPEG", crop.permute(1, 2, 0).contiguous())
    return [o for o in out if o is not None]

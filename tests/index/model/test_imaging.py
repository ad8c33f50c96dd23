"""Decoding untrusted bytes into the model's input crop."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index.errors import ImageDecodeError, ImageTooLarge, UnsupportedImageFormat
from index.model.imaging import decode_for_model, open_image, sha256_hex
from index.model.registry import Preprocessing
from tests.conftest import ImageFactory

PRE = Preprocessing(input_size=224, crop_pct=0.875, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)
LIMIT = 40_000_000


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` but holds no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def save(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def assert_is_model_crop(crop: np.ndarray) -> None:
    assert crop.shape == (224, 224, 3)
    assert crop.dtype == np.uint8


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("PNG", "RGBA"),
        ("PNG", "LA"),
        ("PNG", "P"),
        ("PNG", "L"),
        ("PNG", "1"),
        ("JPEG", "CMYK"),
        ("JPEG", "L"),
        ("GIF", "P"),
        ("WEBP", "RGB"),
        ("WEBP", "RGBA"),
        ("BMP", "RGB"),
        ("TIFF", "RGB"),
        ("TIFF", "CMYK"),
    ],
)
def test_odd_modes_and_formats_decode_to_an_rgb_crop(make_image: ImageFactory, fmt: str, mode: str) -> None:
    data = make_image(fmt, (80, 60), mode)
    decoded = decode_for_model(data, PRE, LIMIT)
    assert_is_model_crop(decoded.crop)
    assert (decoded.width, decoded.height) == (80, 60)


def test_palette_png_with_transparency_decodes() -> None:
    img = Image.new("P", (30, 20), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 15, 20))
    decoded = decode_for_model(save(img, "PNG", transparency=0), PRE, LIMIT)
    assert_is_model_crop(decoded.crop)
    # The transparent (red) half is composited onto white; the opaque half stays blue.
    assert tuple(decoded.crop[112, 10]) == (0, 0, 255)
    assert tuple(decoded.crop[112, 213]) == (255, 255, 255)


def test_fully_transparent_png_becomes_white() -> None:
    data = save(Image.new("RGBA", (40, 40), (200, 10, 10, 0)), "PNG")
    crop = decode_for_model(data, PRE, LIMIT).crop
    assert (crop == 255).all()


def test_sixteen_bit_greyscale_keeps_its_full_range() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (256, 1))
    data = save(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    crop = decode_for_model(data, PRE, LIMIT).crop
    assert_is_model_crop(crop)
    # A ramp from black to white stays one: not clipped to white, not collapsed to black.
    assert crop[:, :, 0].min() < 30
    assert crop[:, :, 0].max() > 225
    assert (crop[:, :, 0] == crop[:, :, 1]).all()


def test_one_pixel_image_decodes() -> None:
    decoded = decode_for_model(save(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"), PRE, LIMIT)
    assert_is_model_crop(decoded.crop)
    assert (decoded.width, decoded.height) == (1, 1)
    assert tuple(decoded.crop[0, 0]) == (10, 200, 30)


def test_animated_gif_uses_its_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    crop = decode_for_model(buf.getvalue(), PRE, LIMIT).crop
    assert tuple(crop[100, 100]) == (255, 0, 0)


def test_exif_rotated_jpeg_is_decoded_upright() -> None:
    # Upright: red on top, blue below. Stored sideways with EXIF orientation 6 ("rotate 90 CW to view").
    upright = Image.new("RGB", (60, 90), (255, 0, 0))
    upright.paste((0, 0, 255), (0, 45, 60, 90))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = save(stored, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode_for_model(data, PRE, LIMIT)
    assert (decoded.width, decoded.height) == (60, 90)  # as shown, not as stored
    crop = decoded.crop.astype(int)
    top, bottom = crop[20, 112], crop[-20, 112]
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_crop_matches_timms_eval_transform(images_dir: Path) -> None:
    import timm
    from timm.data import create_transform, resolve_data_config

    pretrained = timm.models.get_pretrained_cfg("tf_efficientnet_lite0")
    assert pretrained is not None
    cfg = resolve_data_config(pretrained_cfg=pretrained.to_dict())
    transform = create_transform(**cfg)
    for name in ("cat.png", "coffee.jpg", "astronaut.jpg"):
        data = (images_dir / name).read_bytes()
        ours = decode_for_model(data, PRE, LIMIT).crop.astype(np.float64)
        reference = transform(Image.open(io.BytesIO(data)).convert("RGB")).numpy().transpose(1, 2, 0)
        reference = reference * 127.5 + 127.5
        assert np.abs(ours - reference).mean() < 2.5, name


def test_large_jpeg_is_decoded_at_reduced_scale_to_the_same_crop(make_image: ImageFactory) -> None:
    data = make_image("JPEG", (2400, 1600), quality=95)
    fast = decode_for_model(data, PRE, LIMIT).crop.astype(np.float64)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    slow = decode_for_model(save(full, "PNG"), PRE, LIMIT).crop.astype(np.float64)
    assert np.abs(fast - slow).mean() < 3.0


def test_decoded_image_records_hash_size_and_dimensions(make_image: ImageFactory) -> None:
    data = make_image("JPEG", (123, 45))
    decoded = decode_for_model(data, PRE, LIMIT)
    assert decoded.sha256 == sha256_hex(data)
    assert decoded.byte_size == len(data)
    assert (decoded.width, decoded.height, decoded.format) == (123, 45, "JPEG")


def test_too_many_pixels_raises_before_decoding() -> None:
    # The file has no pixel data: only a check made from the header can produce this error.
    with pytest.raises(ImageTooLarge, match="10000x5000"):
        decode_for_model(png_header_only(10_000, 5_000), PRE, LIMIT)


def test_image_beyond_pillows_own_bomb_limit_is_too_large_not_unreadable() -> None:
    with pytest.raises(ImageTooLarge, match=f"limit is {LIMIT}"):
        decode_for_model(png_header_only(100_000, 100_000), PRE, LIMIT)


def test_pixel_limit_is_inclusive(make_image: ImageFactory) -> None:
    data = make_image("PNG", (20, 10))
    assert decode_for_model(data, PRE, max_pixels=200).width == 20
    with pytest.raises(ImageTooLarge):
        decode_for_model(data, PRE, max_pixels=199)


@pytest.mark.parametrize(
    "data",
    [b"", b"this is not an image\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 10, b"\xff\xd8\xff\xe0" + b"\0" * 20],
    ids=["empty", "text", "png-signature-only", "jpeg-signature-only"],
)
def test_bytes_that_are_not_an_image_raise_decode_error(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_for_model(data, PRE, LIMIT)


def test_truncated_jpeg_raises_decode_error(truncated_jpeg: bytes) -> None:
    assert open_image(truncated_jpeg, LIMIT).format == "JPEG"  # the header alone is fine
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_for_model(truncated_jpeg, PRE, LIMIT)


def test_truncated_png_raises_decode_error(make_image: ImageFactory) -> None:
    data = make_image("PNG", (200, 200))
    with pytest.raises(ImageDecodeError):
        decode_for_model(data[: len(data) // 2], PRE, LIMIT)


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA"])
def test_formats_outside_the_accepted_list_raise_unsupported_format(make_image: ImageFactory, fmt: str) -> None:
    with pytest.raises(UnsupportedImageFormat, match=fmt):
        decode_for_model(make_image(fmt, (32, 32)), PRE, LIMIT)

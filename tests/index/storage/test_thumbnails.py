"""Thumbnails of stored images."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from index.errors import ImageDecodeError
from index.storage.thumbnails import make_thumbnail
from tests.conftest import IMAGES_DIR


def test_a_thumbnail_is_a_jpeg_whose_longer_side_is_the_requested_size() -> None:
    data = (IMAGES_DIR / "astronaut.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as original:
        ratio = original.width / original.height
    thumb = Image.open(io.BytesIO(make_thumbnail(data, size=128)))
    assert thumb.format == "JPEG" and max(thumb.size) == 128
    assert thumb.width / thumb.height == pytest.approx(ratio, abs=0.02)


def test_a_small_image_is_not_enlarged() -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (40, 30), (255, 0, 0, 128)).save(buf, "PNG")
    thumb = Image.open(io.BytesIO(make_thumbnail(buf.getvalue(), size=256)))
    assert thumb.size == (40, 30) and thumb.mode == "RGB"


def test_a_truncated_image_is_a_decode_error() -> None:
    data = (IMAGES_DIR / "coffee.jpg").read_bytes()
    with pytest.raises(ImageDecodeError):
        make_thumbnail(data[: len(data) // 3])

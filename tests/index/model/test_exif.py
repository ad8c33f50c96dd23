"""EXIF read from the header: the date taken, camera, lens and GPS position, and nonsense counted as absent."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from PIL import Image, TiffImagePlugin

from index.model.exif import NO_EXIF, PhotoExif, read_exif
from index.model.imaging import HEIF_AVAILABLE
from tests.conftest import IMAGES_DIR, encode_photo


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def with_exif(exif: Image.Exif) -> Image.Image:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif.tobytes())
    return opened(buf.getvalue())


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF", "AVIF"])
def test_a_photo_says_when_where_and_with_what_it_was_taken(fmt: str) -> None:
    assert HEIF_AVAILABLE  # importing imaging registered the HEIF reader (and writer)
    data = encode_photo(
        IMAGES_DIR / "coffee.jpg",
        fmt,
        taken="2024:05:01 12:30:00",
        make="Apple",
        model="iPhone 15 Pro",
        lens="back camera",
        gps=(-33.8568, 151.2153),
    )
    exif = read_exif(opened(data))
    assert exif.taken_at == datetime(2024, 5, 1, 12, 30)
    assert (exif.camera_make, exif.camera_model, exif.lens) == ("Apple", "iPhone 15 Pro", "back camera")
    assert exif.latitude == pytest.approx(-33.8568, abs=1e-4)  # south
    assert exif.longitude == pytest.approx(151.2153, abs=1e-4)


def test_an_image_without_exif_says_nothing() -> None:
    assert read_exif(opened((IMAGES_DIR / "cat.png").read_bytes())) == NO_EXIF


def test_a_date_or_position_that_makes_no_sense_is_absent() -> None:
    exif = Image.Exif()
    exif[0x010F] = "  Canon\x00\x00"
    exif.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (TiffImagePlugin.IFDRational(1, 0), 0.0, 0.0)  # a zero denominator
    gps[3], gps[4] = "E", (200.0, 0.0, 0.0)  # past 180 degrees
    assert read_exif(with_exif(exif)) == PhotoExif(camera_make="Canon")


def test_without_date_time_original_the_digitised_date_is_taken() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9004] = "2019:12:31 23:59:59"
    assert read_exif(with_exif(exif)).taken_at == datetime(2019, 12, 31, 23, 59, 59)


def test_reading_the_exif_decodes_no_pixel() -> None:
    for name in ("cat.png", "coffee.jpg"):
        img = opened((IMAGES_DIR / name).read_bytes())
        read_exif(img)
        assert img.tile, name  # still to decode: what the decode budget counts is yet to come

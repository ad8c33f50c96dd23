"""Camera RAW files: recognised from their header, decoded from the embedded preview when it is large enough or
demosaiced at half size, upright, within the pixel limit and the decode budget; refused clearly when broken or
when rawpy is missing."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index.errors import ImageDecodeError, ImageTooLarge
from index.model.camera_raw import camera_raw_format
from index.model.exif import read_exif
from index.model.imaging import decode_memory, decode_upright, open_image
from tests.camera_raw import make_dng
from tests.conftest import IMAGES_DIR, REPO_ROOT
from tests.index.model.test_imaging import MEASURE_DECODE

COFFEE = IMAGES_DIR / "coffee.jpg"  # 600 x 400


def upright_pixels(data: bytes) -> tuple[str, tuple[int, int], np.ndarray]:
    fmt, size, pixels = decode_upright(data, 10**8, lambda img: np.asarray(img.convert("RGB"), dtype=np.float64))
    return fmt, size, pixels


def resembles(pixels: np.ndarray, picture: Image.Image) -> float:
    """Mean absolute difference from `picture` resized to the same size (0 is identical)."""
    height, width = pixels.shape[:2]
    return float(np.abs(pixels - np.asarray(picture.convert("RGB").resize((width, height)), np.float64)).mean())


@pytest.mark.parametrize("orientation", [1, 6, 8])
@pytest.mark.parametrize(("preview_side", "shown"), [(None, (300, 200)), (1200, (1200, 800)), (600, (300, 200))])
def test_a_dng_decodes_upright_from_its_preview_or_at_half_size(
    orientation: int, preview_side: int | None, shown: tuple[int, int]
) -> None:
    # A preview under 1000 px (600) is a thumbnail: the sensor data is demosaiced at half size instead.
    coffee = Image.open(COFFEE)
    fmt, size, pixels = upright_pixels(make_dng(coffee, preview_side=preview_side, orientation=orientation))
    assert (fmt, size, pixels.shape[1::-1]) == ("DNG", shown, shown)
    sideways = coffee.transpose(Image.Transpose.ROTATE_180)
    assert resembles(pixels, coffee) < 20 < resembles(pixels, sideways)


def test_the_header_says_the_raw_format_and_the_exif_before_decoding() -> None:
    data = make_dng(Image.open(COFFEE), orientation=6, make="NIKON CORPORATION", model="NIKON Z 8")
    img = open_image(data, 10**8)
    assert (img.format, img.size, img.tile) == ("DNG", (200, 300), [])
    exif = read_exif(img)
    assert (exif.camera_make, exif.camera_model, str(exif.taken_at)) == (
        "NIKON CORPORATION",
        "NIKON Z 8",
        "2021-06-30 07:45:00",
    )
    assert camera_raw_format((IMAGES_DIR / "coffee.jpg").read_bytes()) is None
    assert camera_raw_format(Image.open(COFFEE).tobytes()[:64]) is None


def test_a_raw_over_the_pixel_limit_is_refused_from_its_header() -> None:
    data = make_dng(Image.open(COFFEE), preview_side=1200)
    with pytest.raises(ImageTooLarge, match="300x200 = 60000 pixels"):
        # The 1200 x 800 preview is over the limit, so the half-size demosaic is what would be decoded.
        open_image(data, 100_000) and open_image(data, 50_000)
    assert open_image(data, 100_000).size == (300, 200)


def test_a_dng_whose_sensor_data_is_missing_is_a_decode_error() -> None:
    data = bytearray(make_dng(Image.open(COFFEE)))
    strip = data.find(struct.pack("<HHI", 273, 4, 1))  # the StripOffsets entry
    data[strip + 8 : strip + 12] = struct.pack("<I", len(data) + 1000)  # the photosites past the end
    with pytest.raises(ImageDecodeError, match=r"corrupt or truncated image: camera RAW \(DNG\)"):
        upright_pixels(bytes(data))
    with pytest.raises(ImageDecodeError):
        upright_pixels(bytes(data[:5000]))  # its directories cut off too: not recognisable at all


@pytest.mark.parametrize("preview_side", [None, 4000])
def test_a_raw_decode_holds_less_than_its_header_estimate(tmp_path: Path, preview_side: int | None) -> None:
    noise = Image.fromarray(np.random.default_rng(3).integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    data = make_dng(noise, preview_side=preview_side)
    estimate = decode_memory(open_image(data, 10**8), data)
    path = tmp_path / "image.dng"
    path.write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE_DECODE, str(path), "model"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert 0 < int(out.stdout) < estimate, f"+{int(out.stdout) / 2**20:.0f} MiB, counted {estimate / 2**20:.0f}"


def test_without_rawpy_a_raw_is_refused_naming_the_package() -> None:
    script = (
        "import sys; sys.modules['rawpy'] = None\n"
        "from index.errors import UnsupportedImageFormat\n"
        "from index.model.imaging import open_image\n"
        "try:\n    open_image(sys.stdin.buffer.read(), 10**8)\n"
        "except UnsupportedImageFormat as exc:\n    print(exc)\n"
    )
    dng = make_dng(Image.open(COFFEE))
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, input=dng, capture_output=True, check=True)
    assert "a camera RAW image (DNG): install rawpy to read RAW" in out.stdout.decode()

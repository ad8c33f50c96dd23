"""Decoding untrusted bytes into the model's input crop."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index.errors import (
    DecodeBudgetExceeded,
    DecodeBusy,
    ImageDecodeError,
    ImageTooComplex,
    ImageTooLarge,
    UnsupportedImageFormat,
)
from index.model.imaging import (
    MAX_JPEG_SCANS,
    DecodeBudget,
    decode_for_model,
    decode_memory,
    jpeg_scans,
    open_image,
    sha256_hex,
    to_working,
)
from index.model.registry import Preprocessing
from index.storage.thumbnail_cache import ThumbnailCache
from index.storage.thumbnails import make_thumbnail
from tests import hostile
from tests.conftest import REPO_ROOT, ImageFactory

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
        ("HEIF", "RGB"),
        ("HEIF", "RGBA"),
        ("AVIF", "RGB"),
        ("AVIF", "RGBA"),
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


# --- hostile images: memory, scans, time --------------------------------------------------------------

# The peak resident memory of this process (VmHWM: unlike ru_maxrss, not inherited from the forking parent).
MEASURE_DECODE = """
import sys
import psutil
from index.model.imaging import decode_for_model
from index.model.registry import Preprocessing
from index.storage.thumbnails import make_thumbnail
def peak():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) * 1024
data = open(sys.argv[1], "rb").read()
pre = Preprocessing(input_size=224, crop_pct=0.875, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)
before = psutil.Process().memory_info().rss
assert peak() - before < 20e6, "the imports left a peak above the current size"
if sys.argv[2] == "thumbnail":
    make_thumbnail(data)
else:
    decode_for_model(data, pre, 40_000_000)
print(peak() - before)
"""

HOSTILE = {
    "16-bit PNG": hostile.grey16_png,
    "float TIFF": hostile.float_tiff,
    "transparent GIF": hostile.big_gif,
    "1000-frame GIF": lambda: hostile.big_gif(frames=1000),
    "RGBA PNG": hostile.rgba_png,
}


@pytest.mark.parametrize(
    ("kind", "use"), [*((kind, "model") for kind in HOSTILE), ("16-bit PNG", "thumbnail"), ("RGBA PNG", "thumbnail")]
)
def test_a_hostile_image_adds_at_most_three_times_its_rgb8_size(tmp_path: Path, kind: str, use: str) -> None:
    # Made here and decoded in a fresh process, whose peak resident memory is then the decode's alone.
    path = tmp_path / "image"
    path.write_bytes(HOSTILE[kind]())
    out = subprocess.run(
        [sys.executable, "-c", MEASURE_DECODE, str(path), use], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    rgb8 = hostile.WIDTH * hostile.HEIGHT * 3
    assert int(out.stdout) < 3 * rgb8, f"{kind}: +{int(out.stdout) / 1e6:.0f} MB for {rgb8 / 1e6:.0f} MB of RGB8"


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_the_header_estimate_covers_what_the_decode_holds(kind: str) -> None:
    data = HOSTILE[kind]()
    img = open_image(data, LIMIT)
    estimate = decode_memory(img, data)
    rgb8 = hostile.WIDTH * hostile.HEIGHT * 3
    # Measured peaks (see the test above): 131 MB (16-bit), 214 MB (float), 204 MB (GIF), 323 MB (RGBA).
    assert rgb8 < estimate <= 3 * rgb8


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_heic_or_avif_decode_holds_less_than_its_header_estimate(tmp_path: Path, fmt: str) -> None:
    # Noise, so that the encoder cannot make the picture trivial; decoded in a fresh process, as above.
    noise = np.random.default_rng(3).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    data = save(Image.fromarray(noise), fmt, quality=50)
    estimate = decode_memory(open_image(data, LIMIT), data)
    path = tmp_path / "image"
    path.write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE_DECODE, str(path), "model"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert 0 < int(out.stdout) < estimate, f"{fmt}: +{int(out.stdout) / 2**20:.0f} MiB, counted {estimate / 2**20:.0f}"


def test_without_pillow_heif_a_heic_is_refused_naming_the_package(make_image: ImageFactory) -> None:
    # A process where pillow-heif cannot be imported, as in an install without it.
    script = (
        "import sys; sys.modules['pillow_heif'] = None\n"
        "from index.errors import UnsupportedImageFormat\n"
        "from index.model.imaging import open_image\n"
        "try:\n    open_image(sys.stdin.buffer.read(), 10**8)\n"
        "except UnsupportedImageFormat as exc:\n    print(exc)\n"
    )
    heic = make_image("HEIF")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, input=heic, capture_output=True, check=True)
    assert "install pillow-heif to read HEIC" in out.stdout.decode()
    assert open_image(heic, LIMIT).format == "HEIF"  # and with it, the same bytes open


def test_an_image_needing_more_than_the_whole_budget_is_refused_with_the_figure() -> None:
    data = hostile.rgba_png((2000, 2000))  # 2000 x 2000 RGBA: 16 MB decoded, 16 MB converted
    figures = r"2000x2000 PNG RGBA\) needs about \d+ MiB; the decode budget is 20 MiB"
    with pytest.raises(DecodeBudgetExceeded, match=figures):
        decode_for_model(data, PRE, LIMIT, budget=DecodeBudget(memory_bytes=20 << 20))
    assert decode_for_model(data, PRE, LIMIT, budget=DecodeBudget(memory_bytes=200 << 20)).width == 2000


def test_decodes_wait_for_the_budget_in_turn_and_give_up_after_its_wait() -> None:
    budget = DecodeBudget(memory_bytes=100 << 20, wait_s=0.2)
    data = hostile.rgba_png((2000, 2000))
    with budget.reserve(90 << 20, "another image"):
        started = time.monotonic()
        with pytest.raises(DecodeBusy, match="retry shortly"):
            decode_for_model(data, PRE, LIMIT, budget=budget)
        assert time.monotonic() - started >= 0.2
        assert budget.in_use == 90 << 20
    assert decode_for_model(data, PRE, LIMIT, budget=budget).width == 2000  # released: room again
    # First come, first served: a later reservation waits for the one ahead of it.
    budget = DecodeBudget(memory_bytes=100 << 20)
    held = threading.Event()
    order: list[str] = []

    def first() -> None:
        with budget.reserve(60 << 20, "first"):
            held.set()
            time.sleep(0.3)
            order.append("first")

    def second() -> None:
        with budget.reserve(60 << 20, "second"):
            order.append("second")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    held.wait(5)
    threads[1].start()
    for t in threads:
        t.join(10)
    assert order == ["first", "second"] and budget.in_use == 0


def test_thumbnails_decode_within_the_same_budget(tmp_path: Path) -> None:
    data = hostile.rgba_png((2000, 2000))
    with pytest.raises(DecodeBudgetExceeded):
        make_thumbnail(data, budget=DecodeBudget(memory_bytes=20 << 20))
    budget = DecodeBudget(memory_bytes=100 << 20, wait_s=0)
    with budget.reserve(90 << 20, "another image"), pytest.raises(DecodeBusy):
        ThumbnailCache(tmp_path, budget=budget).get("ab" * 32, lambda: data)
    assert not any((tmp_path / "thumbnails").rglob("*.jpg"))


def test_a_progressive_jpeg_with_hundreds_of_scans_is_refused_before_decoding() -> None:
    data = hostile.many_scan_jpeg(repeats=600)
    started = time.monotonic()
    with pytest.raises(ImageTooComplex, match=f"606 scans.*more than {MAX_JPEG_SCANS} are refused"):
        decode_for_model(data, PRE, LIMIT)
    assert time.monotonic() - started < 1  # the decode alone takes 18 s on the development machine
    with pytest.raises(ImageTooComplex):
        make_thumbnail(data)
    assert decode_for_model(hostile.many_scan_jpeg(repeats=0), PRE, LIMIT).width == 6000


def test_scans_are_counted_in_the_first_image_only(make_image: ImageFactory) -> None:
    assert jpeg_scans(make_image("JPEG", (64, 48))) == 1
    assert jpeg_scans(make_image("JPEG", (64, 48), progressive=True)) == 10
    assert jpeg_scans(make_image("JPEG", (64, 48), "L", progressive=True)) == 6
    # An EXIF thumbnail (a JPEG inside an APP1 segment) holds scans of its own: they are not this image's.
    thumb = make_image("JPEG", (32, 24), progressive=True)
    exif = Image.Exif()
    exif[0x0112] = 1
    app1 = b"Exif\x00\x00" + exif.tobytes()[6:] + thumb * 3
    data = make_image("JPEG", (64, 48))
    segment = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    assert jpeg_scans(data[:2] + segment + data[2:]) == 1


def test_a_decode_past_its_time_budget_is_refused_naming_it() -> None:
    data = hostile.grey16_png()  # about a second to decode
    with pytest.raises(ImageTooComplex, match=r"decoding took longer than 0\.01 s \(IMGSIM_DECODE_TIMEOUT_S\)"):
        decode_for_model(data, PRE, LIMIT, budget=DecodeBudget(timeout_s=0.01))
    assert decode_for_model(data, PRE, LIMIT, budget=DecodeBudget(timeout_s=60)).width == hostile.WIDTH


def test_sixteen_bit_and_float_images_rescale_their_range_exactly() -> None:
    rng = np.random.default_rng(3)
    for pixels in (rng.integers(1000, 50000, (300, 700), dtype=np.uint16), rng.random((300, 700), np.float32) * 7 - 2):
        img = Image.fromarray(pixels)
        reference = pixels.astype(np.float64)
        lo, hi = reference.min(), reference.max()
        expected = ((reference - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
        assert np.array_equal(np.asarray(to_working(img)), expected)


def test_alpha_is_composited_onto_white_as_pillow_composites_it() -> None:
    rng = np.random.default_rng(4)
    rgba = Image.fromarray(rng.integers(0, 256, (900, 700, 4), dtype=np.uint8), "RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    expected = Image.alpha_composite(white, rgba).convert("RGB")
    assert np.array_equal(np.asarray(to_working(rgba)), np.asarray(expected))
    palette = rgba.convert("RGB").quantize(64)
    palette.info["transparency"] = 7
    expected = Image.alpha_composite(Image.new("RGBA", palette.size, "white"), palette.convert("RGBA"))
    assert np.array_equal(np.asarray(to_working(palette)), np.asarray(expected.convert("RGB")))


def test_a_sideways_png_is_decoded_upright_and_reported_as_shown() -> None:
    upright = Image.new("RGBA", (60, 90), (255, 0, 0, 255))
    upright.paste((0, 0, 255, 255), (0, 45, 60, 90))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = save(upright.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif.tobytes())
    decoded = decode_for_model(data, PRE, LIMIT)
    assert (decoded.width, decoded.height) == (60, 90)
    assert decoded.crop[20, 112, 0] > 200 and decoded.crop[-20, 112, 2] > 200

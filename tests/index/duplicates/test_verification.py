"""The verification stage on real photos: every kind of copy the `near` level names is proven a copy; another
capture of the same thing, and a different photo under the same caption, are not; identical pixels are `exact`."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from index.duplicates.verification import pixels_identical, prepare, verify
from tests.conftest import IMAGES_DIR

PHOTOS = ("astronaut.jpg", "coffee.jpg", "rocket.jpg")


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _photo(name: str) -> Image.Image:
    return Image.open(IMAGES_DIR / name).convert("RGB")


def _copy(img: Image.Image, edit: str) -> bytes:
    """The edits the `near` level promises to find, including the hard ones."""
    w, h = img.size
    if edit == "resize":
        return _jpeg(img.resize((w * 2 // 5, h * 2 // 5), Image.Resampling.LANCZOS))
    if edit == "jpeg15":
        return _jpeg(img, 15)
    if edit == "down64":
        s = 64 / max(w, h)
        small = img.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR)
        return _jpeg(small.resize((w, h), Image.Resampling.BILINEAR))
    if edit == "crop10":
        return _jpeg(img.crop((w // 20, h // 20, w - w // 20, h - h // 20)))
    if edit == "mirror_rotate15":
        return _jpeg(ImageOps.mirror(img).rotate(15, Image.Resampling.BICUBIC))
    if edit == "greyscale":
        return _jpeg(img.convert("L"))
    if edit == "colour":
        return _jpeg(ImageEnhance.Brightness(ImageEnhance.Color(img).enhance(1.6)).enhance(0.75))
    if edit == "block":  # a coloured block over a corner
        out = img.copy()
        ImageDraw.Draw(out).rectangle((0, 0, w // 4, h // 4), fill=(20, 200, 90))
        return _jpeg(out)
    if edit == "text":
        out = img.copy()
        draw = ImageDraw.Draw(out)
        draw.rectangle((0, h - h // 7, w, h), fill=(0, 0, 0))
        draw.text((6, h - h // 9), "SAMPLE COPYRIGHT 2026 " * 3, fill=(255, 255, 255))
        return _jpeg(out)
    if edit == "border":
        return _jpeg(ImageOps.expand(img, border=w // 12, fill=(250, 250, 240)))
    if edit == "screenshot":
        canvas = Image.new("RGB", (1280, 800), (236, 236, 236))
        ImageDraw.Draw(canvas).rectangle((0, 0, 1280, 36), fill=(40, 40, 48))
        shown = img.resize((w * 560 // h, 560), Image.Resampling.BILINEAR)
        canvas.paste(shown, (120, 90))
        return _png(canvas)
    raise ValueError(edit)


EDITS = (
    "resize",
    "jpeg15",
    "down64",
    "crop10",
    "mirror_rotate15",
    "greyscale",
    "colour",
    "block",
    "text",
    "border",
    "screenshot",
)


def _recapture(img: Image.Image, seed: int) -> bytes:
    """Another photo of the same flat picture, as a camera moved a little would take it: a slight perspective
    and position change, other light across the frame, other sensor noise and focus."""
    rng = np.random.default_rng(seed)
    w, h = img.size
    shift = [float(v) for v in rng.uniform(-0.04, 0.04, 8) * [w, h, w, h, w, h, w, h]]
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    moved = [(x + shift[2 * n], y + shift[2 * n + 1]) for n, (x, y) in enumerate(corners)]
    coeffs = _perspective(moved, corners)
    out = img.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC)
    light = np.linspace(0.85, 1.1, w)[None, :, None] * np.linspace(1.05, 0.9, h)[:, None, None]
    arr = np.asarray(out, np.float32) * light + rng.normal(0, 4, (h, w, 3))
    out = Image.fromarray(arr.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    return _jpeg(out, 92)


def _perspective(source: list[tuple[float, float]], target: list[tuple[int, int]]) -> list[float]:
    rows = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    rhs = [c for pair in source for c in pair]
    return [float(c) for c in np.linalg.solve(np.array(rows, float), np.array(rhs, float))]


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("name", PHOTOS)
def test_every_kind_of_edited_copy_is_proven_a_copy(name: str, edit: str) -> None:
    original = prepare((IMAGES_DIR / name).read_bytes())
    copy = prepare(_copy(_photo(name), edit))
    for evidence in (verify(original, copy), verify(copy, original)):
        assert evidence.copy, (edit, evidence)
        assert evidence.kind in ("aligned", "framing")
    assert verify(original, copy).mirrored == (edit == "mirror_rotate15")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", PHOTOS)
def test_another_capture_of_the_same_picture_is_not_a_copy(name: str, seed: int) -> None:
    photo = _photo(name)
    original, again = prepare(_jpeg(photo)), prepare(_recapture(photo, seed))
    evidence = verify(original, again)
    assert not evidence.copy, evidence
    # It still aligns (the same flat picture): what tells it apart is the residual flow.
    assert evidence.inliers >= 20 and evidence.flow_px is not None and evidence.flow_px > 0.3


def test_two_different_photos_under_the_same_caption_are_not_copies() -> None:
    captioned = []
    for name in ("coffee.jpg", "camera.jpg"):
        img = _photo(name).resize((480, 360))
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, 300, 480, 360), fill=(0, 0, 0))
        draw.text((8, 320), "HOLIDAY 2026 - HOLIDAY 2026 - HOLIDAY 2026", fill=(255, 255, 255))
        captioned.append(prepare(_jpeg(img)))
    assert not verify(*captioned).copy


def test_two_different_photos_whose_caption_bands_lie_over_each_other_only_when_shifted_are_not_copies() -> None:
    captioned = []
    # The band at the top of one and at the bottom of the other: a shift lays the two bands over each other
    # exactly, and nothing else of the two photos.
    for name, top in (("coffee.jpg", 0), ("camera.jpg", 240 - 48)):
        img = _photo(name).resize((320, 240))
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, top, 320, top + 48), fill=(0, 0, 0))
        draw.text((4, top + 8), "SAMPLE COPYRIGHT 2026 " * 4, fill=(255, 255, 255))
        draw.text((4, top + 30), "2026 HOLIDAY PHOTOS " * 4, fill=(255, 255, 255))
        captioned.append(prepare(_jpeg(img)))
    assert not verify(*captioned).copy
    assert not verify(*reversed(captioned)).copy


def test_distinct_photos_have_no_evidence() -> None:
    a, b = (prepare((IMAGES_DIR / n).read_bytes()) for n in ("astronaut.jpg", "coffee.jpg"))
    assert not verify(a, b).copy and not verify(b, a).copy


def test_smooth_pictures_with_no_features_are_copies_only_when_their_layouts_agree() -> None:
    # Blurred colour fields: too few features to align, so only the same framing can prove a copy; a dense flow
    # bends one smooth field onto another, so two different layouts must not get that far.
    rng = np.random.default_rng(7)
    fields = [
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((160, 120), Image.Resampling.BILINEAR)
        for _ in range(24)
    ]
    prepared = [prepare(_jpeg(f, 95)) for f in fields]
    for n, a in enumerate(prepared):
        for b in prepared[n + 1 :]:
            assert not verify(a, b).copy
    resized = prepare(_jpeg(fields[0].resize((120, 90), Image.Resampling.LANCZOS), 80))
    assert verify(prepared[0], resized).copy


@pytest.mark.parametrize(("degrees", "copy"), [(20, True), (-30, True), (90, False), (180, False)])
def test_a_copy_is_rotated_a_little_not_turned_over(degrees: int, copy: bool) -> None:
    # A fit that turns one image over (or shrinks it onto a few pixels of the other) is what chance matches
    # between two different photos give; the edits of a copy rotate it by a few degrees.
    photo = _photo("camera.jpg")
    turned = prepare(_jpeg(photo.rotate(degrees, Image.Resampling.BICUBIC, expand=True)))
    assert verify(prepare(_jpeg(photo)), turned).copy is copy


@pytest.mark.parametrize("size", [(10, 10), (400, 9), (9, 300), (30, 20)])
def test_images_of_a_few_pixels_are_compared_without_an_error(size: tuple[int, int]) -> None:
    photo = _photo("coffee.jpg")
    small, twice = (
        prepare(_png(photo.resize(s, Image.Resampling.LANCZOS))) for s in (size, (size[0] * 2, size[1] * 2))
    )
    verify(small, twice), verify(twice, small)  # no error (below 12 px the dense flow refuses to run)
    assert verify(small, small).copy == (min(size) >= 12)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _with_exif(jpeg: bytes) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "test camera"
    payload = b"Exif\x00\x00" + exif.tobytes()
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_identical_pixels_are_the_same_picture_whatever_the_file() -> None:
    jpeg = (IMAGES_DIR / "coffee.jpg").read_bytes()
    decoded = Image.open(io.BytesIO(jpeg))
    assert pixels_identical(jpeg, _with_exif(jpeg))  # only metadata differs
    assert pixels_identical(jpeg, _png(decoded))  # the same pixels, another format
    assert not pixels_identical(jpeg, _jpeg(decoded, 95))  # recompressed: other pixels
    assert not pixels_identical(jpeg, _png(ImageOps.mirror(decoded)))


def test_an_image_stored_sideways_with_its_orientation_is_the_same_picture_as_the_upright_one(tmp_path: Path) -> None:
    upright = _photo("rocket.jpg")
    upright_png = _png(upright)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes, with orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    sideways.save(buf, "PNG", exif=exif.tobytes())
    assert pixels_identical(upright_png, buf.getvalue())

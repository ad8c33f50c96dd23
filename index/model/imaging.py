"""Decoding untrusted image bytes and turning them into the model's input crop."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from index.config import DECODE_MEMORY_BYTES, DECODE_TIMEOUT_S, Settings
from index.errors import (
    DecodeBudgetExceeded,
    DecodeBusy,
    ImageDecodeError,
    ImageTooComplex,
    ImageTooLarge,
    ImgsimError,
    UnsupportedImageFormat,
)
from index.model.camera_raw import RAW_CONTENT_TYPES, CameraRawImage, camera_raw_format, open_camera_raw
from index.model.exif import NO_EXIF, PhotoExif, read_exif
from index.model.registry import Preprocessing

if TYPE_CHECKING:
    import torch

try:
    import pillow_heif
except ImportError:  # every other format reads without it; a HEIC then says what to install
    HEIF_AVAILABLE = False
else:
    HEIF_AVAILABLE = True
    # Only the primary image: never the thumbnails, depth maps or auxiliary images a phone stores beside it.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

# HEIF is HEIC (iPhone photos) through pillow-heif; AVIF is Pillow's own (Pillow 11.3 and later); the camera RAW
# formats go through rawpy (`index.model.camera_raw`).
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "HEIF", "AVIF", *RAW_CONTENT_TYPES})
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "HEIF": "image/heic",
    "AVIF": "image/avif",
    **RAW_CONTENT_TYPES,
}
# The ISO base media file's major brands of HEVC-coded HEIF: recognised without pillow-heif to say what is missing.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# libjpeg's progressive mode writes 10 scans for colour and 6 for greyscale; more than this is an attack
# (each scan is a pass over every coefficient: 600 repeated scans of a 36 Mpx image are 18 s of CPU).
MAX_JPEG_SCANS = 100
# Bytes per pixel as Pillow keeps each mode (two-band modes take four bytes); other modes take four.
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_HIGH_DEPTH = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_GREY_MODES = _HIGH_DEPTH | {"1"}
# Conversions work on blocks of rows of about this many pixels (a few MB of scratch).
_BLOCK_PIXELS = 1 << 18
# What any decode holds besides the pixels (decoder state, row buffers, the crop): measured under 10 MB.
_DECODER_STATE = 16 << 20
T = TypeVar("T")
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
    exif: PhotoExif = NO_EXIF


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DecodeBudget:
    """The memory image decodes may hold at once, shared by every thread that decodes with it, and the time
    one decode may take.

    Each decode reserves what its header says it will need (`decode_memory`) before a pixel is decoded, and
    waits, first come first served, while the budget is taken; an image that alone needs more than the whole
    budget is refused. With `wait_s`, a decode that has waited that long gives up (`DecodeBusy`).
    """

    def __init__(
        self,
        memory_bytes: int = DECODE_MEMORY_BYTES,
        timeout_s: float | None = DECODE_TIMEOUT_S,
        wait_s: float | None = None,
    ) -> None:
        self.memory_bytes = memory_bytes
        self.timeout_s = timeout_s or None
        self.wait_s = wait_s
        self._used = 0
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()

    @classmethod
    def from_settings(cls, settings: Settings, wait_s: float | None = None) -> DecodeBudget:
        return cls(settings.decode_memory_bytes, settings.decode_timeout_s, wait_s)

    @property
    def in_use(self) -> int:
        """Bytes reserved by the decodes running now."""
        return self._used

    @contextmanager
    def reserve(self, nbytes: int, what: str) -> Iterator[None]:
        """Hold `nbytes` of the budget for the duration of the block.

        Raises:
            DecodeBudgetExceeded: `nbytes` is more than the whole budget.
            DecodeBusy: `wait_s` passed before other decodes left room.
        """
        if nbytes > self.memory_bytes:
            raise DecodeBudgetExceeded(
                f"decoding this image ({what}) needs about {_megabytes(nbytes)}; the decode budget is "
                f"{_megabytes(self.memory_bytes)} (IMGSIM_DECODE_MEMORY_BYTES)"
            )
        ticket = object()
        deadline = None if self.wait_s is None else time.monotonic() + self.wait_s
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self._used + nbytes > self.memory_bytes:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise DecodeBusy(
                            f"other images being decoded hold the decode budget of {_megabytes(self.memory_bytes)} "
                            "(IMGSIM_DECODE_MEMORY_BYTES); retry shortly"
                        )
                    self._cond.wait(remaining)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
            self._used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self._used -= nbytes
                self._cond.notify_all()


# Used where no budget is handed in (the CLI's own decodes, tests): shared by the process, never gives up waiting.
DEFAULT_BUDGET = DecodeBudget()


def _megabytes(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


class _TimedReader(io.BytesIO):
    """The image bytes, as Pillow's decoders read them: a read after `deadline` stops the decode.

    Pillow's decoders (JPEG, PNG, GIF, BMP) read their input 64 KB at a time, so a decode is stopped within
    one block of work; the conversion checks the same deadline between blocks of rows.
    """

    deadline: float | None = None
    timeout_s: float | None = None

    def start(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ImageTooComplex(
                f"decoding took longer than {self.timeout_s:g} s (IMGSIM_DECODE_TIMEOUT_S); send a smaller image"
            )

    def read(self, size: int | None = -1) -> bytes:
        self.check()
        return super().read(size)


def jpeg_scans(data: bytes) -> int:
    """The number of scans (SOS markers) of a JPEG's first image, found without decoding anything."""
    pos, end = 2, len(data)
    # Marker segments up to the first scan, skipped by their lengths (an EXIF thumbnail inside holds scans too).
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return 0  # not a marker where one must be: the decoder will say what is wrong
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if marker == 0xDA:
            break
        if marker == 0xD9:
            return 0
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    else:
        return 0
    # After the first scan: entropy-coded data, where 0xFF is always followed by 0x00 or a restart marker, so
    # every further SOS marker up to the end of the image is a scan.
    stop = data.find(b"\xff\xd9", pos)
    return 1 + data.count(b"\xff\xda", pos + 2, stop if stop >= 0 else end)


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open `data` lazily and check format, size and (for JPEG) scans from the header, before any pixel is
    decoded.

    Raises:
        ImageDecodeError: empty or not an image.
        UnsupportedImageFormat: an image format outside ACCEPTED_FORMATS.
        ImageTooLarge: width x height above `max_pixels`.
        ImageTooComplex: a JPEG with more than MAX_JPEG_SCANS scans.
    """
    return _open(data, max_pixels)[0]


def _open(data: bytes, max_pixels: int) -> tuple[Image.Image, _TimedReader]:
    if not data:
        raise ImageDecodeError("empty file")
    reader = _TimedReader(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            raw_format = camera_raw_format(data)
            img = open_camera_raw(reader, raw_format, max_pixels) if raw_format else Image.open(reader)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses these from the header alone, before our own check can see the size.
        limit = Image.MAX_IMAGE_PIXELS
        raise ImageTooLarge(f"image has more than {limit} pixels; the limit is {max_pixels}") from exc
    except UnidentifiedImageError as exc:
        if not HEIF_AVAILABLE and data[4:8] == b"ftyp" and data[8:12] in _HEIC_BRANDS:
            raise UnsupportedImageFormat(
                "a HEIC/HEIF image: install pillow-heif to read HEIC (pip install pillow-heif)"
            ) from exc
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
    if img.format in ("JPEG", "MPO") and (scans := jpeg_scans(data)) > MAX_JPEG_SCANS:
        raise ImageTooComplex(
            f"progressive JPEG with {scans} scans; encoders write at most a few dozen and images with more than "
            f"{MAX_JPEG_SCANS} are refused (each scan is another pass over every pixel)"
        )
    return img, reader


def decode_memory(img: Image.Image, data: bytes, header_size: tuple[int, int] | None = None) -> int:
    """Bytes that decoding `img` (opened, drafted, not loaded) and converting it will hold at their peak,
    from its header: the decoded pixels and the decoder's own buffers, then the converted copy beside them,
    then (for an EXIF rotation) the converted image and its rotated copy. `header_size` is a drafted
    JPEG's size before drafting.

    Only the first frame of an animation or a multi-page file is ever decoded, so frames add nothing.
    """
    width, height = img.size
    pixels = width * height
    decoded = pixels * _BYTES_PER_PIXEL.get(img.mode, 4)
    if img.mode in ("RGB", "L"):
        converted, final = 0, decoded
    elif img.mode in _GREY_MODES:
        converted = final = pixels
    else:
        converted = final = pixels * 4
    scratch = min(pixels, _BLOCK_PIXELS) * 32 if converted else 0
    buffers = _decoder_buffers(img, data, header_size or img.size)
    return _DECODER_STATE + max(decoded + buffers, decoded + converted + scratch, 2 * final)


def _decoder_buffers(img: Image.Image, data: bytes, header_size: tuple[int, int]) -> int:
    """Memory a decoder holds beside the decoded pixels while it runs."""
    if img.format in ("JPEG", "MPO") and jpeg_scans(data) > 1:
        # Progressive (or multi-scan) JPEG: libjpeg keeps every DCT coefficient of the full-size image, two
        # bytes each, whatever the reduced scale it outputs.
        full_w, full_h = header_size
        layers = getattr(img, "layer", None) or [(0, 1, 1, 0)]
        h_max = max(h for _, h, _, _ in layers)
        v_max = max(v for _, _, v, _ in layers)
        return sum(
            -(-full_w * h // (8 * h_max)) * -(-full_h * v // (8 * v_max)) * 64 * 2 + (1 << 16) for _, h, v, _ in layers
        )
    if img.format == "WEBP":
        # libwebp decodes into a canvas and keeps the previous one, and Pillow copies the canvas into bytes.
        return 3 * 4 * img.size[0] * img.size[1]
    if isinstance(img, CameraRawImage):
        return img.decoder_bytes
    if img.format in ("HEIF", "AVIF"):
        # libheif and libavif decode into planes of their own, convert them to interleaved RGB(A) and Pillow
        # copies that: decoding a 4000x3000 HEIC or AVIF grew the process by 99-108 MiB, its 46 MiB of pixels
        # included (this counts 138 MiB, room for 10-bit planes).
        return 2 * 4 * img.size[0] * img.size[1]
    if img.format == "TIFF":
        # libtiff decodes a strip or a tile at a time into a buffer of its own.
        tags = getattr(img, "tag_v2", {})
        width, height = img.size
        bits = tags.get(258, 8)
        bits_per_pixel = int(max(bits) if isinstance(bits, tuple) else bits) * int(tags.get(277, 1))
        if 322 in tags and 323 in tags:  # TileWidth, TileLength
            return -(-int(tags[322]) * bits_per_pixel // 8) * int(tags[323])
        return -(-width * bits_per_pixel // 8) * min(height, int(tags.get(278, height)))  # RowsPerStrip
    return 0


def decode_upright(
    data: bytes,
    max_pixels: int,
    use: Callable[[Image.Image], T],
    *,
    draft_size: int | None = None,
    budget: DecodeBudget | None = None,
) -> tuple[str, tuple[int, int], T]:
    """Decode `data` within the decode budget into an 8-bit image ("L" or "RGB"), upright per EXIF, and hand
    it to `use`, which must reduce it to something small (the full-size images are freed when it returns).

    A JPEG is decoded at 1/2, 1/4 or 1/8 scale while both sides stay at least `draft_size`. Returns the
    format, the size as shown (width and height swapped for a sideways EXIF orientation) and what `use`
    returned.

    Raises:
        ImageDecodeError, UnsupportedImageFormat, ImageTooLarge, ImageTooComplex: see `open_image`; a
            truncated or corrupt image; a decode past the budget's time limit.
        DecodeBudgetExceeded: decoding would need more memory than the whole budget.
        DecodeBusy: the budget stayed taken for longer than its `wait_s`.
    """
    fmt, size, result, _ = _decode_upright(data, max_pixels, use, draft_size, budget)
    return fmt, size, result


def _decode_upright(
    data: bytes,
    max_pixels: int,
    use: Callable[[Image.Image], T],
    draft_size: int | None,
    budget: DecodeBudget | None,
) -> tuple[str, tuple[int, int], T, PhotoExif]:
    """`decode_upright`, and the image's EXIF facts, read from its header before decoding."""
    budget = budget or DEFAULT_BUDGET
    img, reader = _open(data, max_pixels)
    fmt, size = str(img.format), img.size
    exif = read_exif(img)
    try:
        if draft_size is not None and fmt in ("JPEG", "MPO"):
            # DCT-domain downscaling: a fraction of the work of a full decode, and it barely changes the result.
            img.draft("RGB", (draft_size, draft_size))
        what = f"{size[0]}x{size[1]} {fmt} {img.mode}"
        with budget.reserve(decode_memory(img, data, size), what):
            reader.start(budget.timeout_s)
            img.load()
            reader.check()
            orientation = img.getexif().get(_EXIF_ORIENTATION)
            working = to_working(img, reader.check)
            if working is not img:
                img.close()  # the decoded pixels go before a rotated copy is made
            if (method := _TRANSPOSE.get(orientation or 1)) is not None:
                upright = working.transpose(method)
                working.close()
                working = upright
            if orientation in (5, 6, 7, 8):
                size = (size[1], size[0])
            try:
                result = use(working)
            finally:
                working.close()
    except (OSError, ValueError, SyntaxError, RuntimeError, Image.DecompressionBombError) as exc:
        # RuntimeError: what libheif's decoder raises through pillow-heif for some broken files.
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from exc
    finally:
        img.close()
    return fmt, size, result, exif


def to_working(img: Image.Image, check: Callable[[], None] = lambda: None) -> Image.Image:
    """Any mode Pillow decodes (palette, alpha, CMYK, 16-bit, float) as 8-bit "L" or "RGB": greyscale stays one
    band until the image is small, alpha is composited onto white. Converted a block of rows at a time, so
    the only full-size copy is the result; `check` is called between blocks.
    """
    mode = img.mode
    if mode in ("RGB", "L"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in _HIGH_DEPTH:
        return _rescaled_grey(img, check)
    out = Image.new("RGB", img.size)
    for box in _row_blocks(img.size):
        check()
        out.paste(_block_to_rgb(img.crop(box)), box[:2])
    return out


def _block_to_rgb(block: Image.Image) -> Image.Image:
    mode = block.mode
    if mode == "P":
        block = block.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = block.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return block.convert("RGB")


def _rescaled_grey(img: Image.Image, check: Callable[[], None]) -> Image.Image:
    """16-bit and float greyscale to "L": convert("L") would clip, so the real range is rescaled to 0..255
    (float64 arithmetic a block at a time; values that are not finite count as the darkest)."""
    boxes = _row_blocks(img.size)
    lo, hi = np.inf, -np.inf
    for box in boxes:
        check()
        block = np.asarray(img.crop(box))
        finite = block[np.isfinite(block)] if block.dtype.kind == "f" else block
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = Image.new("L", img.size)
    for box in boxes:
        check()
        block = np.asarray(img.crop(box), dtype=np.float64)
        scaled = np.nan_to_num((block - lo) * scale, nan=0.0, posinf=255.0, neginf=0.0) if scale else block * 0
        out.paste(Image.fromarray(np.clip(scaled.round(), 0, 255).astype(np.uint8), "L"), box[:2])
    return out


def _row_blocks(size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    width, height = size
    rows = max(1, _BLOCK_PIXELS // width)
    return [(0, top, width, min(height, top + rows)) for top in range(0, height, rows)]


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
    return np.asarray(out.convert("RGB"), dtype=np.uint8)


def decode_for_model(
    data: bytes, pre: Preprocessing, max_pixels: int, sha256: str | None = None, budget: DecodeBudget | None = None
) -> DecodedImage:
    """Validate, decode (within `budget`) and crop one image. JPEGs are decoded at a reduced scale when they
    are much larger.

    Raises:
        ImageDecodeError, UnsupportedImageFormat, ImageTooLarge, ImageTooComplex, DecodeBudgetExceeded,
        DecodeBusy: see `decode_upright`.
    """
    fmt, (width, height), crop, exif = _decode_upright(
        data, max_pixels, lambda img: model_crop(img, pre), pre.resize, budget
    )
    return DecodedImage(
        sha256=sha256 or sha256_hex(data),
        byte_size=len(data),
        width=width,
        height=height,
        format=fmt,
        crop=crop,
        exif=exif,
    )


def decode_jpegs_on_device(
    items: Sequence[tuple[bytes, str]],
    pre: Preprocessing,
    max_pixels: int,
    device: torch.device,
    budget: DecodeBudget | None = None,
) -> list[DecodedImage | ImgsimError]:
    """Decode a batch of JPEGs with torchvision (nvJPEG on a CUDA device) and resize and crop them there, so
    the crops never leave the device. Each item is (bytes, sha256); results come in the same order.

    Headers are still checked with Pillow first (format, pixel limit, scans). Other formats, and JPEGs the device
    decoder refuses (CMYK, say), go through `decode_for_model`; a broken image becomes its error in its slot.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2.functional import resized_crop

    out: list[DecodedImage | ImgsimError | None] = [None] * len(items)
    todo: list[int] = []
    exifs: dict[int, PhotoExif] = {}
    for pos, (data, sha) in enumerate(items):
        try:
            header = open_image(data, max_pixels)
            if header.format in ("JPEG", "MPO"):
                exifs[pos] = read_exif(header)
                todo.append(pos)
            else:
                out[pos] = decode_for_model(data, pre, max_pixels, sha256=sha, budget=budget)
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
                out[pos] = decode_for_model(data, pre, max_pixels, sha256=sha, budget=budget)
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
        out[pos] = DecodedImage(sha, len(data), width, height, "JPEG", crop.permute(1, 2, 0).contiguous(), exifs[pos])
    return [o for o in out if o is not None]

"""Camera RAW files made on the fly: a DNG as a camera writes one (a Bayer mosaic of 16-bit photosites, colour
matrix, EXIF, orientation), optionally behind an embedded JPEG preview, from any 8-bit RGB picture.

The TIFF is written here byte by byte: no library in the environment writes a DNG LibRaw accepts.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from numpy.typing import NDArray
from PIL import Image

BYTE, ASCII, SHORT, LONG, RATIONAL, SRATIONAL = 1, 2, 3, 4, 5, 10
_SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, SRATIONAL: 8}
# CIE XYZ to linear sRGB: the "camera" of these files sees linear sRGB, so LibRaw's output is the picture again.
XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)
WHITE = 4095  # a 12-bit sensor
# Display orientation -> the transpose that lays the upright picture the way the sensor saw it.
_SENSOR = {1: None, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}

Tags = dict[int, tuple[int, object]]


def _pack(kind: int, values: object) -> bytes:
    if kind == ASCII:
        assert isinstance(values, str)
        return values.encode() + b"\0"
    items = list(values) if isinstance(values, (list, tuple)) else [values]
    if kind in (RATIONAL, SRATIONAL):
        return b"".join(struct.pack("<ii" if kind == SRATIONAL else "<II", *v) for v in items)
    return struct.pack(f"<{len(items)}{ {BYTE: 'B', SHORT: 'H', LONG: 'I'}[kind] }", *items)


class _Tiff:
    """A little-endian TIFF assembled in memory: blobs and directories appended, the first IFD set last."""

    def __init__(self) -> None:
        self.buf = bytearray(b"II*\0\0\0\0\0")

    def blob(self, data: bytes) -> int:
        if len(self.buf) % 2:
            self.buf += b"\0"
        at = len(self.buf)
        self.buf += data
        return at

    def ifd(self, tags: Tags) -> int:
        entries = []
        for tag in sorted(tags):
            kind, values = tags[tag]
            data = _pack(kind, values)
            count = len(data) // _SIZES[kind]
            value = data.ljust(4, b"\0") if len(data) <= 4 else struct.pack("<I", self.blob(data))
            entries.append(struct.pack("<HHI", tag, kind, count) + value)
        return self.blob(struct.pack("<H", len(entries)) + b"".join(entries) + b"\0\0\0\0")

    def finish(self, first_ifd: int) -> bytes:
        self.buf[4:8] = struct.pack("<I", first_ifd)
        return bytes(self.buf)


def _mosaic(rgb: NDArray[np.uint8]) -> NDArray[np.uint16]:
    """The RGGB Bayer mosaic a sensor would record of `rgb` (linearised, 12-bit)."""
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    linear = (rgb[:height, :width].astype(np.float64) / 255) ** 2.2 * WHITE
    out = np.empty((height, width), np.uint16)
    out[0::2, 0::2] = linear[0::2, 0::2, 0]
    out[0::2, 1::2] = linear[0::2, 1::2, 1]
    out[1::2, 0::2] = linear[1::2, 0::2, 1]
    out[1::2, 1::2] = linear[1::2, 1::2, 2]
    return out


def make_dng(
    upright: Image.Image,
    *,
    preview_side: int | None = None,
    orientation: int = 1,
    make: str = "Canon",
    model: str = "Canon EOS R5",
    taken: str = "2021:06:30 07:45:00",
) -> bytes:
    """A DNG of the `upright` picture, its sensor data laid as `orientation` (1, 6 or 8) says, with a JPEG
    preview whose longer side is `preview_side` (in the sensor's orientation, as cameras store it) or none."""
    turn = _SENSOR[orientation]
    sensor = upright.convert("RGB") if turn is None else upright.convert("RGB").transpose(turn)
    tiff = _Tiff()
    bayer = _mosaic(np.asarray(sensor))
    height, width = bayer.shape
    strip = tiff.blob(bayer.tobytes())
    exif = tiff.ifd({0x9003: (ASCII, taken)})
    raw: Tags = {
        254: (LONG, 0),
        256: (LONG, width),
        257: (LONG, height),
        258: (SHORT, 16),
        259: (SHORT, 1),
        262: (SHORT, 32803),  # CFA
        273: (LONG, strip),
        277: (SHORT, 1),
        278: (LONG, height),
        279: (LONG, bayer.nbytes),
        284: (SHORT, 1),
        33421: (SHORT, [2, 2]),  # CFARepeatPatternDim
        33422: (BYTE, [0, 1, 1, 2]),  # CFAPattern: RGGB
        50714: (LONG, 0),  # BlackLevel
        50717: (LONG, WHITE),  # WhiteLevel
    }
    main: Tags = {
        271: (ASCII, make),
        272: (ASCII, model),
        274: (SHORT, orientation),
        34665: (LONG, exif),
        50706: (BYTE, [1, 4, 0, 0]),  # DNGVersion
        50707: (BYTE, [1, 1, 0, 0]),
        50708: (ASCII, f"{make} {model}"),
        50721: (SRATIONAL, [(round(v * 10000), 10000) for v in XYZ_TO_SRGB]),  # ColorMatrix1
        50728: (RATIONAL, [(1, 1)] * 3),  # AsShotNeutral
        50778: (SHORT, 21),  # CalibrationIlluminant1: D65
    }
    if preview_side is None:
        return tiff.finish(tiff.ifd({**raw, **main}))
    raw_ifd = tiff.ifd(raw)
    scale = preview_side / max(sensor.size)
    preview = sensor.resize((round(sensor.width * scale), round(sensor.height * scale)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    preview.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    at = tiff.blob(jpeg)
    first: Tags = {
        254: (LONG, 1),  # a reduced-resolution image: the preview
        256: (LONG, preview.width),
        257: (LONG, preview.height),
        258: (SHORT, [8, 8, 8]),
        259: (SHORT, 7),  # JPEG
        262: (SHORT, 6),  # YCbCr
        273: (LONG, at),
        277: (SHORT, 3),
        278: (LONG, preview.height),
        279: (LONG, len(jpeg)),
        330: (LONG, raw_ifd),  # SubIFDs: the sensor data
    }
    return tiff.finish(tiff.ifd({**first, **main}))

"""Hostile image files, made on the fly: small uploads that decode into large or slow work.

Each is a valid image a real decoder accepts, within the pixel limit, built the way an attacker would: large
and uniform (so it compresses to almost nothing), in a mode whose conversion to RGB is costly, or with a
progressive JPEG's last scan repeated hundreds of times.
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

# 6000 x 6600 = 39.6 Mpx: just under the default pixel limit of 40 Mpx.
WIDTH, HEIGHT = 6000, 6600


def _save(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def grey16_png(size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    """A 16-bit greyscale PNG, one gradient row repeated (~75 KB for 40 Mpx)."""
    row = (np.arange(size[0], dtype=np.uint32) * 65535 // max(1, size[0] - 1)).astype(np.uint16)
    img = Image.fromarray(np.broadcast_to(row, (size[1], size[0])).copy())
    return _save(img, "PNG", compress_level=9)


def float_tiff(size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    """A 32-bit float greyscale TIFF (deflate-compressed): four bands of values between 0 and 1."""
    row = np.repeat(np.linspace(0.0, 1.0, 4, dtype=np.float32), -(-size[0] // 4))[: size[0]]
    img = Image.fromarray(np.broadcast_to(row, (size[1], size[0])).copy())
    return _save(img, "TIFF", compression="tiff_adobe_deflate")


def rgba_png(size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    """A half-transparent RGBA PNG of one colour."""
    return _save(Image.new("RGBA", size, (200, 30, 60, 128)), "PNG", compress_level=9)


def big_gif(size: tuple[int, int] = (WIDTH, HEIGHT), frames: int = 1) -> bytes:
    """A palette GIF with a transparent colour; with `frames` > 1 an animation of that many frames."""
    first = Image.new("P", size, 0)
    first.putpalette([255, 255, 255, 10, 120, 200] + [0] * 762)
    first.paste(1, (0, 0, size[0] // 2, size[1]))
    if frames == 1:
        return _save(first, "GIF", transparency=0)
    rest = [Image.new("P", (8, 8), n % 2) for n in range(frames - 1)]
    for img in rest:
        img.putpalette([255, 255, 255, 10, 120, 200] + [0] * 762)
    return _save(first, "GIF", save_all=True, append_images=rest, transparency=0, duration=10, disposal=1)


_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def scan_offsets(jpeg: bytes) -> list[int]:
    """Where each SOS marker of a JPEG starts."""
    return [m.start() for m in _MARKER.finditer(jpeg) if m.group() == b"\xff\xda"]


def many_scan_jpeg(size: tuple[int, int] = (6000, 6000), repeats: int = 600) -> bytes:
    """A progressive JPEG whose last scan is repeated `repeats` times (a real encoder writes 6 to 10 scans)."""
    img = Image.new("L", size, 128)
    img.paste(40, (0, 0, size[0] // 3, size[1] // 3))
    data = _save(img, "JPEG", progressive=True, quality=90)
    last = scan_offsets(data)[-1]
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * repeats + data[end:]

"""What a photo's EXIF says about where, when and with what it was taken, read from the header alone."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

from PIL import Image

_MAKE, _MODEL = 0x010F, 0x0110
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATE_TIME_ORIGINAL, _DATE_TIME_DIGITIZED, _DATE_TIME = 0x9003, 0x9004, 0x0132
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
# The longest text kept of each field (the columns' widths): a camera writes a few dozen characters.
MAX_TEXT = 128
# "2024:05:01 12:30:00", sometimes with '-' or 'T', sub-seconds or a zone after it (kept off: the camera's clock).
_DATE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")


@dataclass(frozen=True)
class PhotoExif:
    """The EXIF facts kept of an image; each None where the file does not say (or says nonsense)."""

    taken_at: datetime | None = None  # DateTimeOriginal: the camera's own clock, no time zone
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    latitude: float | None = None  # degrees, north positive
    longitude: float | None = None  # degrees, east positive


NO_EXIF = PhotoExif()


def read_exif(img: Image.Image) -> PhotoExif:
    """The EXIF of an opened (not decoded) image: Pillow reads it with the header, so this decodes no pixel.

    Anything unreadable counts as absent: EXIF is what a camera says, never a reason to refuse an image.
    """
    if img.format == "PNG" and "exif" not in img.info:
        # An eXIf chunk after the pixels: Pillow would decode the whole image to reach it. Not looked for.
        return NO_EXIF
    try:
        exif = img.getexif()
        if not exif:
            return NO_EXIF
        sub = exif.get_ifd(_EXIF_IFD)
        gps = exif.get_ifd(_GPS_IFD)
    except Exception:  # a malformed EXIF block of any kind: the image is still an image
        return NO_EXIF
    taken = _date(sub.get(_DATE_TIME_ORIGINAL)) or _date(sub.get(_DATE_TIME_DIGITIZED)) or _date(exif.get(_DATE_TIME))
    lens = _text(sub.get(_LENS_MODEL))
    lens_make = _text(sub.get(_LENS_MAKE))
    if lens and lens_make and not lens.lower().startswith(lens_make.lower()):
        lens = f"{lens_make} {lens}"[:MAX_TEXT]
    return PhotoExif(
        taken_at=taken,
        camera_make=_text(exif.get(_MAKE)),
        camera_model=_text(exif.get(_MODEL)),
        lens=lens,
        latitude=_coordinate(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), "S", 90),
        longitude=_coordinate(gps.get(_GPS_LON), gps.get(_GPS_LON_REF), "W", 180),
    )


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = "".join(c for c in value.replace("\x00", " ") if c.isprintable()).strip()
    return cleaned[:MAX_TEXT] or None


def _date(value: object) -> datetime | None:
    text = _text(value)
    match = _DATE.match(text or "")
    if match is None:
        return None  # absent, or "0000:00:00 00:00:00" and the like
    try:
        year, month, day, hour, minute, second = (int(g) for g in match.groups())
        return datetime(year, month, day, hour, minute, second)  # EXIF times carry no zone
    except ValueError:
        return None


def _coordinate(dms: object, ref: object, negative: str, limit: float) -> float | None:
    """Degrees from EXIF's (degrees, minutes, seconds) rationals and its N/S or E/W reference."""
    if not isinstance(dms, tuple) or not 1 <= len(dms) <= 3:
        return None
    try:
        parts = [float(p) for p in dms]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    degrees = sum(p / 60**n for n, p in enumerate(parts))
    if not math.isfinite(degrees) or not 0 <= degrees <= limit:
        return None
    if (_text(ref) or "").upper().startswith(negative):
        degrees = -degrees
    return round(degrees, 7)

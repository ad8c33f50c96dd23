"""Camera RAW files (DNG, CR2, CR3, NEF, ARW) through rawpy (LibRaw): the preview the camera embedded when it
is large enough, else a half-size demosaic of the sensor data, as a lazily decoded Pillow image.

The file is recognised from its first bytes and its first TIFF directory, before Pillow sees it: Pillow would
otherwise open most of these as a TIFF of their small first image.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageFile

from index.errors import ImageDecodeError, UnsupportedImageFormat

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

RAW_CONTENT_TYPES = {
    "DNG": "image/x-adobe-dng",
    "CR2": "image/x-canon-cr2",
    "CR3": "image/x-canon-cr3",
    "NEF": "image/x-nikon-nef",
    "ARW": "image/x-sony-arw",
}
# An embedded preview at least this long on its longer side stands for the picture; a smaller one (a thumbnail)
# does not, and the sensor data is demosaiced at half size instead.
MIN_PREVIEW_SIDE = 1000
_MAKE, _ORIENTATION, _SUB_IFDS, _DNG_VERSION = 0x010F, 0x0112, 0x014A, 0xC612
# LibRaw's `flip` (0, 3, 5, 6) as the EXIF orientation that turns the sensor's picture upright.
_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


def camera_raw_format(data: bytes) -> str | None:
    """The RAW format of `data` ("DNG", "CR2", "CR3", "NEF" or "ARW"), or None for anything else."""
    if data[4:12] == b"ftypcrx ":
        return "CR3"
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    if data[8:10] == b"CR":
        return "CR2"
    ifd0 = _tiff_directory(data)
    if _DNG_VERSION in ifd0:
        return "DNG"
    make = str(ifd0.get(_MAKE, "")).strip().upper()
    # A NEF keeps its sensor data in SubIFDs; a Nikon scanner's plain TIFF has none.
    if make.startswith("NIKON") and _SUB_IFDS in ifd0:
        return "NEF"
    if make.startswith("SONY"):
        return "ARW"
    return None


def _tiff_directory(data: bytes) -> Image.Exif:
    """The first TIFF directory's tags (and, through `get_ifd`, its EXIF and GPS directories); empty if unreadable."""
    exif = Image.Exif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of a directory cut short; it is only not a RAW file
            exif.load(data)
    except Exception:  # a broken directory: not a RAW file we can name, Pillow will say what it is
        return Image.Exif()
    return exif


def open_camera_raw(fp: io.BytesIO, raw_format: str, max_pixels: int) -> CameraRawImage:
    """Open a RAW file without decoding it: its size is the preview's or the half-size demosaic's.

    Raises:
        UnsupportedImageFormat: rawpy is not installed.
        ImageDecodeError: LibRaw cannot read the file.
    """
    try:
        import rawpy  # noqa: F401 - only to say what is missing before LibRaw is needed
    except ImportError as exc:
        raise UnsupportedImageFormat(
            f"a camera RAW image ({raw_format}): install rawpy to read RAW (pip install rawpy)"
        ) from exc
    return CameraRawImage(fp, raw_format, max_pixels)


class CameraRawImage(ImageFile.ImageFile):
    """A RAW file as a Pillow image: `size` and `getexif()` come from the header; `load()` decodes the
    embedded preview, or demosaics the sensor data at half size, in the sensor's orientation (the EXIF
    orientation says how to turn it upright, as for a JPEG)."""

    format_description = "camera RAW (LibRaw)"
    # What decoding will hold besides the decoded pixels, from the header (see `index.model.imaging`).
    decoder_bytes = 0

    def __init__(self, fp: io.BytesIO, raw_format: str, max_pixels: int) -> None:
        self._raw_format = raw_format
        self._max_pixels = max_pixels
        self._raw: Any = None
        self._preview: Image.Image | NDArray[np.uint8] | None = None
        self._exif_data = Image.Exif()
        super().__init__(fp)

    def _open(self) -> None:
        import rawpy

        assert self.fp is not None
        data = self.fp.getvalue() if isinstance(self.fp, io.BytesIO) else self.fp.read()
        self.format = self._raw_format
        try:
            self._raw = raw = rawpy.imread(io.BytesIO(data))
            sizes = raw.sizes
        except (rawpy.LibRawError, OSError, ValueError) as exc:
            raise ImageDecodeError(f"unreadable camera RAW ({self._raw_format}): {exc}") from exc
        exif = _tiff_directory(data) if data[:2] in (b"II", b"MM") else Image.Exif()
        preview = self._find_preview(raw, rawpy)
        if preview is not None and not exif.get(_MAKE) and isinstance(preview, Image.Image):
            exif = preview.getexif()  # a CR3's container is no TIFF; its preview may say more
        exif[_ORIENTATION] = _FLIP_TO_ORIENTATION.get(int(sizes.flip), 1)
        self._exif_data = exif
        self._mode = "RGB"
        if preview is not None:
            self._preview = preview
            height, width = preview.shape[:2] if not isinstance(preview, Image.Image) else preview.size[::-1]
            # rawpy's copy of the file, and the preview's own bytes.
            self.decoder_bytes = 2 * len(data)
        else:
            # Half size: each 2x2 block of the mosaic is one pixel, so nothing is interpolated.
            width, height = (int(sizes.width) + 1) // 2, (int(sizes.height) + 1) // 2
            # rawpy's copy of the file, the unpacked sensor data (16 bits a photosite), LibRaw's working
            # image (four 16-bit channels a pixel) and its 8-bit output, copied once into numpy.
            sensor = int(sizes.raw_width) * int(sizes.raw_height)
            self.decoder_bytes = len(data) + 2 * sensor + width * height * (8 + 3 + 3)
        self._size = (width, height)  # as decoded, sideways or not: `decode_upright` swaps them for the orientation
        self.tile = []

    def _find_preview(self, raw: Any, rawpy: Any) -> Image.Image | NDArray[np.uint8] | None:
        """The embedded preview (opened, not decoded) if it is at least MIN_PREVIEW_SIDE long and within the
        pixel limit; None if there is none."""
        try:
            thumb = raw.extract_thumb()
        except (rawpy.LibRawError, OSError, ValueError):
            return None
        found: Image.Image | NDArray[np.uint8]
        if thumb.format == rawpy.ThumbFormat.JPEG:
            try:
                found = Image.open(io.BytesIO(thumb.data), formats=["JPEG"])
            except (OSError, SyntaxError, ValueError):
                return None
            width, height = found.size
        else:
            bitmap: NDArray[np.uint8] = thumb.data
            height, width = bitmap.shape[:2]
            found = bitmap
        if max(width, height) < MIN_PREVIEW_SIDE or width * height > self._max_pixels:
            return None
        return found

    def getexif(self) -> Image.Exif:
        return self._exif_data

    def load(self) -> Any:
        if self._im is None:
            try:
                picture = self._decode()
            finally:
                self._close_raw()
            self._size = picture.size
            self.im = picture.im
        return Image.Image.load(self)

    def _decode(self) -> Image.Image:
        import rawpy

        preview = self._preview
        if isinstance(preview, Image.Image):
            return preview.convert("RGB")
        if preview is not None:
            return Image.fromarray(preview[..., :3] if preview.ndim == 3 else preview).convert("RGB")
        try:
            # The sensor's orientation (user_flip=0): the EXIF orientation turns it upright, as for a preview.
            rgb = self._raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8, user_flip=0)
        except rawpy.LibRawError as exc:
            raise OSError(f"camera RAW ({self._raw_format}): {exc}") from exc
        return Image.fromarray(rgb)

    def _close_raw(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def close(self) -> None:
        self._close_raw()
        super().close()

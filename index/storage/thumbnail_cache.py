"""Thumbnails kept in the data directory: derived data, made once from the kept bytes and rebuilt when missing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from index.model.imaging import DecodeBudget
from index.storage.permissions import make_private_subdir, write_private
from index.storage.thumbnails import THUMBNAIL_SIZE, make_thumbnail

THUMBNAIL_DIR = "thumbnails"


class ThumbnailCache:
    """JPEG previews under `data_dir/thumbnails/<sha[:2]>/<sha>.jpg`, keyed by content like the blobs."""

    def __init__(
        self,
        data_dir: Path,
        size: int = THUMBNAIL_SIZE,
        max_pixels: int = 200_000_000,
        budget: DecodeBudget | None = None,
    ) -> None:
        self.root = data_dir / THUMBNAIL_DIR
        self.size = size
        self.max_pixels = max_pixels
        self.budget = budget

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def get(
        self, sha256: str, read_original: Callable[[], bytes], still_stored: Callable[[], bool] = lambda: True
    ) -> bytes:
        """The thumbnail of `sha256`, made from `read_original()` and kept when it is not there yet.

        A thumbnail made while its image is deleted must not outlive it: the delete removes the kept file
        after it commits, so `still_stored()` is asked once the file is in place, and a `False` removes it
        again (whichever comes last, the file goes).

        Raises:
            FileNotFoundError: the original bytes are not kept either (from `read_original`), or the image
                was deleted while its thumbnail was made.
            ImageDecodeError, ImageTooLarge, DecodeBusy: the original is not a usable image, or cannot be
                decoded now.
        """
        path = self.path(sha256)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        data = make_thumbnail(read_original(), self.size, self.max_pixels, self.budget)
        make_private_subdir(path.parent)
        # A unique temporary name, then a rename: readers never see half a file, concurrent makers both succeed.
        tmp = path.with_name(f".{sha256}.{uuid.uuid4().hex}.tmp")
        try:
            write_private(tmp, data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if not still_stored():
            self.remove(sha256)
            raise FileNotFoundError(f"image {sha256} was deleted while its thumbnail was made")
        return data

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

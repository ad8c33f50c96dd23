"""Where the original image bytes are kept, content-addressed: a local directory, or any fsspec URL.

The local directory (`data_dir/blobs`) is the default. Shared storage for several replicas or nodes is an
fsspec URL (`s3://bucket/imgsim`, `gs://...`, or `file:///mnt/shared/blobs` on a shared file system): the
same layout, `<root>/<first two hex digits>/<sha256>`, so a directory can move to a bucket as it is.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from index.errors import BackendUnavailable
from index.storage.permissions import make_private_subdir, write_private


class BlobStore(Protocol):
    """Bytes by SHA-256. `read` raises FileNotFoundError for bytes that are not kept."""

    def exists(self, sha256: str) -> bool: ...
    def write(self, sha256: str, data: bytes) -> None: ...
    def read(self, sha256: str) -> bytes: ...
    def delete(self, sha256: str) -> None: ...


def write_many(blobs: BlobStore, items: Sequence[tuple[str, bytes]]) -> None:
    """`write` for many images at once; I/O releases the GIL, so a few threads overlap it."""
    if len(items) < 4:
        for sha256, data in items:
            blobs.write(sha256, data)
        return
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda item: blobs.write(*item), items))


class LocalBlobs:
    """A directory on the local disk (the default)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def write(self, sha256: str, data: bytes) -> None:
        path = self.path(sha256)
        if path.exists():
            return
        make_private_subdir(path.parent)
        # Unique per writer: concurrent uploads of the same bytes each write their own file, then one rename wins.
        tmp = path.with_name(f".{sha256}.{uuid.uuid4().hex}.tmp")
        try:
            write_private(tmp, data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk must not leave a partial file behind
            raise

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


class FsspecBlobs:
    """Any fsspec file system: object stores (one PUT is atomic) or a shared mount (temporary file + rename)."""

    def __init__(self, url: str) -> None:
        """Raises: BackendUnavailable: an unknown scheme, a missing driver, or storage that cannot be listed."""
        import fsspec

        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ValueError, ImportError) as exc:
            raise BackendUnavailable(f"cannot use IMGSIM_BLOB_URL {url!r}: {exc}") from exc
        self.root = str(root).rstrip("/")
        self.url = url
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self._local = bool({"file", "local"} & set(protocols))
        try:
            if self._local:
                self.fs.makedirs(self.root, exist_ok=True)
            self.fs.ls(self.root)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"cannot use IMGSIM_BLOB_URL {url!r}: {exc}") from exc

    def _path(self, sha256: str) -> str:
        return f"{self.root}/{sha256[:2]}/{sha256}"

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self._path(sha256)))

    def write(self, sha256: str, data: bytes) -> None:
        path = self._path(sha256)
        if self.fs.exists(path):
            return
        if not self._local:
            self.fs.pipe_file(path, data)
            return
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path.rsplit('/', 1)[0]}/.{sha256}.{uuid.uuid4().hex}.tmp"
        try:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.rm_file(tmp)  # a full disk must not leave a partial file behind
            raise

    def read(self, sha256: str) -> bytes:
        data: Any = self.fs.cat_file(self._path(sha256))
        return bytes(data)

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(sha256))


def open_blobs(data_dir: Path, url: str | None) -> LocalBlobs | FsspecBlobs:
    """The blob storage the settings name: `url`, or `data_dir/blobs` without one.

    Raises:
        BackendUnavailable: `url` cannot be used.
    """
    if not url:
        return LocalBlobs(data_dir / "blobs")
    return FsspecBlobs(url)

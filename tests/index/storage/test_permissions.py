"""A data directory is its owner's: 0700 and 0600 under the usual umask, the group's too only under a umask
that shares with it, never anyone else's; the lock file only the owner can open, so no other local user can
hold its lock and stop the service from starting."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from index.config import Settings
from index.pipeline import ImageSource
from index.service import ImageIndex
from index.storage.lock import LOCK_FILE, DataDirLock
from index.storage.store import ImageStore
from tests.conftest import IMAGES_DIR, CountingEmbedder


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, tuple[int, bool]]:
    """Relative path -> (permission bits, is a directory) of everything under `root`, `root` itself as '.'."""
    found = {".": (stat.S_IMODE(root.stat().st_mode), True)}
    for path in root.rglob("*"):
        info = path.lstat()
        found[str(path.relative_to(root))] = (stat.S_IMODE(info.st_mode), stat.S_ISDIR(info.st_mode))
    return found


def fill(data_dir: Path, embedder: CountingEmbedder) -> dict[str, tuple[int, bool]]:
    """A data directory with everything a server writes (images, a thumbnail, the vectors, server.json, the
    database's journal), and the modes of all of it while the index is open."""
    lock = DataDirLock(data_dir, role="api", url="http://127.0.0.1:8080")
    try:
        with ImageIndex(Settings(data_dir=data_dir), embedder, lock=lock) as index:
            results = index.ingest([ImageSource.from_path(IMAGES_DIR / n) for n in ("cat.png", "coffee.jpg")])
            index.thumbnail(results[0].id or 0)
            index.flush()
            return modes(data_dir)
    finally:
        lock.release()


def test_under_the_usual_umask_the_data_directory_is_0700_and_its_files_0600(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    with umask(0o022):
        seen = fill(tmp_path / "data", embedder)
    assert {"imgsim.sqlite3", "imgsim.sqlite3-wal", ".lock", "server.json", "vectors.faiss"} <= set(seen)
    assert any(name.startswith("blobs/") and len(name) > 40 for name in seen)
    assert any(name.startswith("thumbnails/") and name.endswith(".jpg") for name in seen)
    for name, (mode, is_dir) in seen.items():
        assert mode == (0o700 if is_dir else 0o600), f"{name}: {oct(mode)}"


def test_a_umask_that_shares_with_the_group_gives_the_group_access_but_never_others(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    with umask(0o007):
        seen = fill(tmp_path / "data", embedder)
    for name, (mode, is_dir) in seen.items():
        expected = 0o600 if name == ".lock" else 0o770 if is_dir else 0o660
        assert mode == expected, f"{name}: {oct(mode)}"


def test_a_data_directory_made_world_readable_before_is_tightened_when_opened(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chmod(data_dir, 0o755)
    (data_dir / LOCK_FILE).write_text("")
    os.chmod(data_dir / LOCK_FILE, 0o644)
    with umask(0o022), DataDirLock(data_dir):
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((data_dir / LOCK_FILE).stat().st_mode) == 0o600
        ImageStore(data_dir).close()
    assert stat.S_IMODE((data_dir / "imgsim.sqlite3").stat().st_mode) == 0o600


# Run as another user: open the lock file and hold its lock, as anyone could when it was world-readable.
TAKE_LOCK = """
import fcntl, os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
except PermissionError:
    sys.exit(3)
sys.exit(0)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(), reason="needs root to run as nobody")
def test_another_local_user_cannot_open_the_lock_file_or_read_the_images(embedder: CountingEmbedder) -> None:
    # Outside pytest's own temporary folder (0700 already): a folder anyone may pass through, as /srv would be.
    base = Path(tempfile.mkdtemp(prefix="imgsim-perm-", dir="/tmp"))
    try:
        os.chmod(base, 0o711)
        data_dir = base / "data"
        with umask(0o022):
            fill(data_dir, embedder)
        (blob,) = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()][:1]

        def as_nobody() -> None:
            os.setgid(65534)
            os.setuid(65534)

        for target in (data_dir / LOCK_FILE, blob):
            other = subprocess.run(["/usr/bin/python3", "-c", TAKE_LOCK, str(target)], preexec_fn=as_nobody)
            assert other.returncode == 3, target
        with DataDirLock(data_dir):  # and the service can always take it
            pass
    finally:
        shutil.rmtree(base)

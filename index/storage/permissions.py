"""Who may read a data directory: its owner, and its group only where the umask shares with the group.

A data directory holds every uploaded image and (in the lock file and `server.json`) who serves it: it is
made 0700 and what is written in it 0600, whatever the usual umask of 022 would give. A umask that lets the
group write (002, 007: the way a shared group is set up) is taken as asking for the group: then 0770 and
0660, less what the umask takes away. Others never get access. A data directory made by an earlier version
(0755) loses the bits this allows no longer when it is opened; files already in it are then out of others'
reach through it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

_OWNER_DIR, _OWNER_FILE = 0o700, 0o600
_GROUP_DIR, _GROUP_FILE = 0o070, 0o060


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc/self/status)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("Umask:"))
        return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def shares_with_group(umask: int | None = None) -> bool:
    """Whether the umask lets the group write (002, 007): the sign of a group set up to share files."""
    return not (current_umask() if umask is None else umask) & 0o020


def dir_mode() -> int:
    umask = current_umask()
    return _OWNER_DIR | (_GROUP_DIR & ~umask if shares_with_group(umask) else 0)


def file_mode() -> int:
    umask = current_umask()
    return _OWNER_FILE | (_GROUP_FILE & ~umask if shares_with_group(umask) else 0)


def make_private_dir(path: Path) -> None:
    """`path` (and missing parents) as a directory; `path` itself without the access `dir_mode` does not give.

    Raises:
        OSError: it cannot be made.
    """
    make_private_subdir(path)
    info = path.stat()
    allowed = dir_mode() | stat.S_ISGID  # a setgid bit keeps a shared group's files in the group
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & ~allowed:
        os.chmod(path, stat.S_IMODE(info.st_mode) & allowed)


def make_private_subdir(path: Path) -> None:
    """A directory inside the data directory (blob and thumbnail shards), and its missing parents, each made
    with `dir_mode` (Path.mkdir gives missing parents the umask's mode)."""
    if path.is_dir():
        return
    missing = [path, *(p for p in path.parents if not p.exists())]
    mode = dir_mode()
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            if not folder.is_dir():  # a file where the folder should be
                raise


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to a new file `path` (which must not exist) with `file_mode`.

    Raises:
        OSError: it exists, or cannot be written (the partial file is left for the caller to remove).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, file_mode())
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def create_private(path: Path) -> None:
    """An empty file `path` with `file_mode`, unless it exists (e.g. the SQLite database, before SQLite
    creates it with the umask's mode; its journal files take the database file's mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, file_mode()))

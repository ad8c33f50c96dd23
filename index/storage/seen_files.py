"""Files already read: a file whose size, times and inode are what they were when it was last read and hashed
still holds the same bytes, so a re-run over a folder reads and hashes only the files that changed (git's index
and rsync rely on the same facts).

A file changed shortly before it was read is not remembered: a file system's clock is coarse, so a second
write in the same tick would leave the times as they were. Such a file is simply read again next time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

# A file whose times are this close to the moment it was read may still change without its times changing.
SETTLE_NS = 2_000_000_000
# Longer paths are read every time rather than remembered (PostgreSQL's b-tree keys stop near 2.7 kB).
MAX_PATH_CHARS = 1024


@dataclass(frozen=True)
class FileStat:
    """What the file system says of a file without reading it."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str) -> FileStat | None:
        """The file's stat, or None when it cannot be stat'ed (it is then read, and the read reports why)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        # Inodes are unsigned 64-bit; the database stores signed 64-bit integers.
        inode = st.st_ino - (1 << 64) if st.st_ino >= 1 << 63 else st.st_ino
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, inode)

    def settled(self, now_ns: int | None = None) -> bool:
        """Whether the file last changed long enough ago for its stat to vouch for its bytes."""
        now = time.time_ns() if now_ns is None else now_ns
        return now - max(self.mtime_ns, self.ctime_ns) > SETTLE_NS


def rememberable(path: str, stat: FileStat) -> bool:
    """Whether a file read just now may be remembered by its stat."""
    return len(path) <= MAX_PATH_CHARS and stat.settled()

"""Pruning: the images whose recorded files are all gone from disk go to the trash.

An image is found in folders under one or more paths (its names, `ImageInfo.paths`). Once every one of those
files is gone, nothing on disk holds it any more, and pruning moves it to the trash (restored as any trashed
image is). An image also known by a name without a path (uploaded through the API) is never pruned: the
library is the only place that upload lives. So is one with a path this process cannot check (not absolute,
or a URL), and a file that cannot be looked at (permissions) counts as still there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from index.errors import UnknownReference
from index.storage.store import ImageInfo, ImageStore
from index.trash import Trash


def file_is_gone(path: str) -> bool:
    """Whether nothing is at `path` any more (a path that cannot be checked, or looked at, is not gone)."""
    if not os.path.isabs(path) or "://" in path:
        return False
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:  # no permission to look, a failing disk...: it may well be there
        return False
    return False


def all_files_gone(paths: Sequence[str]) -> bool:
    """Whether an image recorded under `paths` ("" for a name without a path) has no file left on disk."""
    return bool(paths) and all(p and file_is_gone(p) for p in paths)


def prune_missing(store: ImageStore, trash: Trash, *, dry_run: bool = False) -> list[ImageInfo]:
    """Move to the trash every live image whose recorded files are all gone (with `dry_run`, nothing moves);
    returns those images, in id order, as they were before the move.

    Raises:
        StorageError: the disk is full or failing (the images moved until then stay in the trash).
    """
    gone = [image_id for page in store.iter_recorded_paths() for image_id, paths in page if all_files_gone(paths)]
    found: dict[int, ImageInfo] = {}
    for start in range(0, len(gone), 900):
        found.update(store.get_many(gone[start : start + 900]))
    pruned: list[ImageInfo] = []
    for image_id in gone:
        info = found.get(image_id)
        if info is None or info.trashed_at is not None:
            continue  # deleted or trashed meanwhile
        if dry_run:
            pruned.append(info)
            continue
        if not all_files_gone(info.paths):  # a file came back meanwhile (checked again right before moving)
            continue
        try:
            trash.move(image_id)
        except UnknownReference:  # trashed or deleted for good meanwhile
            continue
        pruned.append(info)
    return pruned

"""Groups from duplicate pairs, guarded against chaining (A~B, B~C, A far from C): every member of a group is
within the threshold of the image the group keeps."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from index.duplicates.candidates import Pairs, StoredVectors
from index.duplicates.space import DuplicateSpace
from index.duplicates.verification import Evidence
from index.storage.store import ImageInfo


@dataclass(frozen=True)
class DuplicateMember:
    image: ImageInfo
    similarity: float  # duplicate similarity to the kept image (1.0 for the kept image itself)
    evidence: Evidence | None = None  # what the pixels say about it and the kept image (None: not verified)


@dataclass(frozen=True)
class DuplicateGroup:
    keep: int  # id of the image to keep (see `keep_order`)
    members: list[DuplicateMember]  # the kept image first, then by similarity
    level: str | None = None  # the level it was found at (None: a threshold of one's own)

    @property
    def size(self) -> int:
        """Copies in the group: every name (and path) a member was stored under counts."""
        return sum(copies(m.image) for m in self.members)


def group_is_copies(group: DuplicateGroup) -> bool:
    """Whether every member is proven (by bytes or pixels) a copy of the kept image: removing them loses no picture."""
    others = group.members[1:]
    if not others:  # one picture under several names
        return True
    return group.level in ("exact", "near") and all(m.evidence is not None and m.evidence.copy for m in others)


def group_reason(group: DuplicateGroup) -> str:
    """Why the images are a group, in words."""
    others = group.members[1:]
    return describe_group(group.level, group.size, [m.similarity for m in others], [m.evidence for m in others])


def describe_group(
    level: str | None, files: int, similarities: Sequence[float], evidence: Sequence[Evidence | None]
) -> str:
    """Why `files` files are a group, in words: the level, and the similarity and evidence of each image but the
    kept one (none: one picture under several names)."""
    if not similarities:
        return f"one picture stored under {files} names: identical bytes"
    lowest = min(similarities)
    if level == "exact":
        return f"the same picture {files} times: identical bytes or pixels"
    if level == "near":
        kinds = sorted({e.kind for e in evidence if e is not None})
        flows = [e.flow_px for e in evidence if e is not None and e.flow_px]
        detail = f", aligned to within {max(flows):.2f} px" if flows else ""
        return f"{files} copies of one capture: each checked against the kept image ({', '.join(kinds)}{detail})"
    if level == "similar":
        return f"{files} similar photos (the same scene or object): similarity to the kept image at least {lowest:.2f}"
    return f"{files} photos with similarity to the kept image at least {lowest:.2f}"


def copies(info: ImageInfo) -> int:
    """How many files one stored row stands for: exact byte copies share a row."""
    return max(len(info.names), len(set(info.paths)), 1)


def keep_order(info: ImageInfo, exif: int = 0) -> tuple[int, int, int, float, int]:
    """Sort key putting the image to keep first: the most pixels, then the larger file, then the richer EXIF
    (`exif_richness`), then the oldest, then the lowest id."""
    return (-info.width * info.height, -info.byte_size, -exif, info.created_at.timestamp(), info.id)


_DATE_TAKEN, _DATE_TIME, _EXIF_IFD, _GPS_IFD = 0x9003, 0x0132, 0x8769, 0x8825


def exif_richness(data: bytes) -> int:
    """How much of what a person keeps a photo for its EXIF holds: the date it was taken, and where (0 to 2)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            exif = img.getexif()
            dated = bool(exif.get_ifd(_EXIF_IFD).get(_DATE_TAKEN) or exif.get(_DATE_TIME))
            placed = bool(exif.get_ifd(_GPS_IFD))
    except (OSError, ValueError, SyntaxError):
        return 0
    return int(dated) + int(placed)


def components(a: NDArray[np.int64], b: NDArray[np.int64]) -> list[list[int]]:
    """Connected components (two or more ids) of the graph with edges a[i]-b[i] (union-find)."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    groups: dict[int, list[int]] = {}
    for x in parent:
        groups.setdefault(root(x), []).append(x)
    return [g for g in groups.values() if len(g) > 1]


# Which of `others` belong with `keep`, given their duplicate similarity to it (the guard against chaining).
Linked = Callable[[int, Sequence[int], NDArray[np.float32]], Sequence[bool]]


# Stored vectors read at once for grouping (about 37 MB at 2280 dimensions): whole components, at least one.
GROUP_VECTORS = 4096


def _batch_from(comps: Sequence[Sequence[int]], start: int) -> list[Sequence[int]]:
    """Components from `start` on, up to `GROUP_VECTORS` ids (at least the first)."""
    batch, size = [comps[start]], len(comps[start])
    for comp in comps[start + 1 :]:
        if size + len(comp) > GROUP_VECTORS:
            break
        batch.append(comp)
        size += len(comp)
    return batch


def group_pairs(
    pairs: Pairs,
    vectors: StoredVectors,
    space: DuplicateSpace,
    threshold: float,
    order: Callable[[Sequence[int]], dict[int, Any]],
    guarded: bool = True,
    linked: Linked | None = None,
    apart: Callable[[int, int], bool] | None = None,
) -> list[tuple[int, list[tuple[int, float]]]]:
    """Groups of ids from duplicate pairs: (kept id, [(id, similarity to the kept one)], kept first).

    `order` gives each id a sort key, smallest for the image to keep. Guarded (the default): within each
    connected component, the image to keep takes every member linked to itself — within `threshold` of it, or
    what `linked` says (a verified copy of it) — and the rest is grouped again the same way, so every member is
    linked to the kept image, not only to another member. Single-link (`guarded=False`) keeps whole
    components, chains included. `apart(kept, other)` true: a decision says they are not duplicates, so the
    kept image never takes that one (it reaches it through other pairs).
    """
    a, b, _ = pairs
    comps = components(a, b)
    keys = order([i for comp in comps for i in comp])
    out = []
    stored: dict[int, NDArray[np.float32]] = {}
    for n, comp in enumerate(comps):
        if not stored.keys() & comp:  # a vector server answers per request: components read together
            batch = [i for c in _batch_from(comps, n) for i in c if i in keys]
            stored = dict(zip(batch, vectors.vectors_of(np.array(batch, np.int64)), strict=True)) if batch else {}
        rest = sorted((i for i in comp if i in keys), key=lambda i: keys[i])
        while len(rest) > 1:
            keep = rest[0]
            vecs = np.stack([stored[i] for i in rest])
            sims = space.similarity(np.repeat(vecs[:1], len(rest), axis=0), vecs)
            sims[0] = 1.0
            if not guarded:
                taken = list(range(len(rest)))
            elif linked is None:
                taken = [n for n in range(len(rest)) if sims[n] >= threshold]
            else:
                taken = [0] + [n + 1 for n, ok in enumerate(linked(keep, rest[1:], sims[1:])) if ok]
            if apart is not None:
                taken = [n for n in taken if n == 0 or not apart(keep, rest[n])]
            if len(taken) > 1:
                members = sorted(((rest[n], float(sims[n])) for n in taken[1:]), key=lambda m: (-m[1], keys[m[0]]))
                out.append((keep, [(keep, 1.0), *members]))
                gone = set(taken)
            else:
                gone = {0}
            rest = [i for n, i in enumerate(rest) if n not in gone]
    return out

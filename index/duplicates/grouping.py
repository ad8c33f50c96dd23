"""Groups from duplicate pairs, guarded against chaining (A~B, B~C, A far from C): every member of a group is
within the threshold of the image the group keeps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from index.duplicates.candidates import Pairs
from index.duplicates.space import DuplicateSpace
from index.storage.store import ImageInfo
from index.vectors.faiss_index import VectorIndex


@dataclass(frozen=True)
class DuplicateMember:
    image: ImageInfo
    similarity: float  # duplicate similarity to the kept image (1.0 for the kept image itself)


@dataclass(frozen=True)
class DuplicateGroup:
    keep: int  # id of the image to keep: the largest resolution, then the oldest
    members: list[DuplicateMember]  # the kept image first, then by similarity

    @property
    def size(self) -> int:
        """Copies in the group: every name (and path) a member was stored under counts."""
        return sum(copies(m.image) for m in self.members)


def copies(info: ImageInfo) -> int:
    """How many files one stored row stands for: exact byte copies share a row."""
    return max(len(info.names), len(set(info.paths)), 1)


def keep_order(info: ImageInfo) -> tuple[int, float, int]:
    """Sort key putting the image to keep first: the most pixels, then the oldest, then the lowest id."""
    return (-info.width * info.height, info.created_at.timestamp(), info.id)


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


def group_pairs(
    pairs: Pairs,
    vectors: VectorIndex,
    space: DuplicateSpace,
    threshold: float,
    order: Callable[[Sequence[int]], dict[int, Any]],
    guarded: bool = True,
    apart: Callable[[int, int], bool] | None = None,
) -> list[tuple[int, list[tuple[int, float]]]]:
    """Groups of ids from duplicate pairs: (kept id, [(id, similarity to the kept one)], kept first).

    `order` gives each id a sort key, smallest for the image to keep. Guarded (the default): within each
    connected component, the image to keep takes every member within `threshold` of itself, and the rest
    is grouped again the same way, so no member is further than `threshold` from the kept image. Single-link
    (`guarded=False`) keeps whole components, chains included. `apart(kept, other)` true: a decision says they
    are not duplicates, so the kept image never takes that one (it reaches it through other pairs).
    """
    a, b, _ = pairs
    comps = components(a, b)
    keys = order([i for comp in comps for i in comp])
    out = []
    for comp in comps:
        rest = sorted((i for i in comp if i in keys), key=lambda i: keys[i])
        while len(rest) > 1:
            keep = rest[0]
            vecs = vectors.vectors_of(np.array(rest, np.int64))
            sims = space.similarity(np.repeat(vecs[:1], len(rest), axis=0), vecs)
            sims[0] = 1.0
            taken = [
                n
                for n in range(len(rest))
                if (not guarded or sims[n] >= threshold) and (n == 0 or apart is None or not apart(keep, rest[n]))
            ]
            if len(taken) > 1:
                members = sorted(((rest[n], float(sims[n])) for n in taken[1:]), key=lambda m: (-m[1], keys[m[0]]))
                out.append((keep, [(keep, 1.0), *members]))
                gone = set(taken)
            else:
                gone = {0}
            rest = [i for n, i in enumerate(rest) if n not in gone]
    return out

""" "Not duplicates" decisions: a person said some images are not copies of each other, and no grouping, at any
level or threshold, pairs them again.

A decision is kept by content (the images' SHA-256), so it outlives restarts, re-ingests, the trash, a purge
followed by a new ingest of the same bytes, and rebuilt vector indexes. Each grouping call loads the decisions
once (`load_decisions`), as the stored image ids they cover, and drops the dismissed pairs from its candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from index.duplicates.candidates import Pairs
from index.storage.store import Dismissal, ImageInfo, ImageStore


@dataclass(frozen=True)
class Decision:
    """A decision as callers see it: the stored images it names (some may have been deleted for good since)."""

    id: int
    created_at: datetime
    sha256s: list[str]  # every image of the decision, by content
    images: list[ImageInfo]  # those still stored (live or in the trash)


@dataclass(frozen=True)
class Decisions:
    """Every decision, as the stored image ids it covers."""

    by_image: dict[int, frozenset[int]]  # image id -> the decisions naming it

    @property
    def key(self) -> frozenset[tuple[int, frozenset[int]]]:
        """What a cached grouping answer depends on."""
        return frozenset(self.by_image.items())

    def apart(self, a: int, b: int) -> bool:
        """Whether one decision names both images: they are never a pair."""
        first, second = self.by_image.get(a), self.by_image.get(b)
        return first is not None and second is not None and not first.isdisjoint(second)

    def drop_dismissed(self, pairs: Pairs) -> Pairs:
        """`pairs` without those whose two images one decision names."""
        a, b, s = pairs
        if not self.by_image or len(a) == 0:
            return pairs
        named = np.fromiter(self.by_image, np.int64, len(self.by_image))
        # Only pairs with both images named by some decision need a closer look (usually very few).
        suspect = np.flatnonzero(np.isin(a, named) & np.isin(b, named))
        dropped = [n for n in suspect.tolist() if self.apart(int(a[n]), int(b[n]))]
        if not dropped:
            return pairs
        keep = np.ones(len(a), dtype=bool)
        keep[dropped] = False
        return a[keep], b[keep], s[keep]


def load_decisions(store: ImageStore) -> Decisions:
    """The stored decisions, mapped onto the images stored now (one query)."""
    by_image: dict[int, set[int]] = {}
    for dismissal_id, image_id in store.dismissed_images():
        by_image.setdefault(image_id, set()).add(dismissal_id)
    return Decisions({image_id: frozenset(ids) for image_id, ids in by_image.items()})


def describe(store: ImageStore, dismissals: Sequence[Dismissal]) -> list[Decision]:
    """Each decision with the stored images it names, in the order of their hashes."""
    found = store.ids_by_sha(h for d in dismissals for h in d.sha256s)
    ids = list(found.values())
    infos: dict[int, ImageInfo] = {}
    for start in range(0, len(ids), 900):
        infos.update(store.get_many(ids[start : start + 900]))
    return [
        Decision(
            d.id,
            d.created_at,
            d.sha256s,
            [infos[found[h]] for h in d.sha256s if h in found and found[h] in infos],
        )
        for d in dismissals
    ]

"""The library's entry points for near-duplicates: every group among the stored images, or one image's copies.

Candidate pairs come from the vector index (`candidates`); at `exact` and `near` each candidate is then proven
by its pixels (`verifier`), at `similar` and at a threshold of one's own the similarity decides (with the
verified copies that heavy edits moved below `similar`). Groups are guarded against chaining (`grouping`).

Only live images are grouped (the vector index holds no image in the trash), and a pair that a "not duplicates"
decision names is never a pair (`decisions`): such pairs are dropped before anything is verified.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select

from index.duplicates.candidates import Pairs, StoredVectors, find_pairs
from index.duplicates.decisions import load_decisions
from index.duplicates.grouping import DuplicateGroup, DuplicateMember, exif_richness, group_pairs, keep_order
from index.duplicates.space import Criterion, DuplicateSpace
from index.duplicates.verification import Evidence
from index.duplicates.verifier import PairVerifier, identical_bytes
from index.storage.schema import ImageRow, NameRow
from index.storage.store import LIVE, ImageInfo, ImageStore


@dataclass(frozen=True)
class DuplicateReport:
    criterion: Criterion
    groups: list[DuplicateGroup]  # largest first

    @property
    def threshold(self) -> float:
        return self.criterion.threshold

    @property
    def level(self) -> str | None:
        return self.criterion.level


class DuplicateFinder:
    """Groups of near-duplicates among the stored images; the last answer is kept until the index changes."""

    def __init__(
        self, store: ImageStore, vectors: StoredVectors, space: DuplicateSpace, verifier: PairVerifier | None = None
    ) -> None:
        self.store = store
        self.vectors = vectors
        self.space = space
        self.verifier = verifier or PairVerifier(store.read_blob)
        self._cache: tuple[tuple[Any, ...], list[DuplicateGroup]] | None = None
        self._lock = threading.Lock()

    def _infos(self, ids: Sequence[int]) -> dict[int, ImageInfo]:
        out: dict[int, ImageInfo] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 900):
            out.update(self.store.get_many(unique[start : start + 900]))
        return out

    def _multi_named(self, among: Collection[int] | None) -> list[int]:
        """Live rows stored under several names or paths of their own: exact byte copies (names recorded from
        a copy resolved into a row are not copies of it)."""
        with self.store.session() as s:
            live = select(ImageRow.id).where(LIVE)
            own = NameRow.merged_from.is_(None) & NameRow.image_id.in_(live)
            query = select(NameRow.image_id).where(own).group_by(NameRow.image_id).having(func.count() > 1)
            found = [int(i) for i in s.scalars(query)]
        return found if among is None else [i for i in found if i in among]

    # --- the evidence a criterion asks for ------------------------------------------------------------------

    def _candidate_threshold(self, criterion: Criterion) -> float:
        levels = self.space.levels
        if criterion.level == "similar":  # copies that heavy edits moved below `similar` count too
            return min(levels.near, levels.similar)
        return criterion.threshold

    def _evidence(self, criterion: Criterion, pairs: Sequence[tuple[ImageInfo, ImageInfo]]) -> list[Evidence | None]:
        """What the pixels say about each pair, or None where the criterion asks nothing of them."""
        levels = self.space.levels
        if criterion.level == "exact":
            return list(self.verifier.identical([(a.sha256, b.sha256) for a, b in pairs]))
        if criterion.level in ("near", "similar"):
            return list(self.verifier.copies([(a.sha256, b.sha256) for a, b in pairs]))
        del levels
        return [None for _ in pairs]

    def _linked(
        self, criterion: Criterion, infos: dict[int, ImageInfo], keep: int, others: Sequence[int], sims: NDArray[Any]
    ) -> list[bool]:
        """Which of `others` belong in a group with `keep` under `criterion` (each checked against `keep` itself)."""
        levels = self.space.levels
        if criterion.level in (None, "similar"):
            close = [bool(s >= criterion.threshold) for s in sims]
            if criterion.level is None:
                return close
            unsure = [n for n, ok in enumerate(close) if not ok and sims[n] >= levels.near]
        else:
            close = [False] * len(others)
            unsure = [n for n in range(len(others)) if sims[n] >= criterion.threshold]
        if unsure:
            found = self._evidence(criterion, [(infos[keep], infos[others[n]]) for n in unsure])
            for n, evidence in zip(unsure, found, strict=True):
                close[n] = evidence is not None and evidence.copy
        return close

    def _verified_pairs(self, criterion: Criterion, pairs: Pairs, infos: dict[int, ImageInfo]) -> Pairs:
        """The candidate pairs the criterion keeps as edges."""
        a, b, sims = pairs
        levels = self.space.levels
        present = np.array([int(x) in infos and int(y) in infos for x, y in zip(a, b, strict=True)], bool)
        a, b, sims = a[present], b[present], sims[present]
        if criterion.level is None:
            return a, b, sims
        if criterion.level == "similar":
            keep = sims >= criterion.threshold
            unsure = np.flatnonzero(~keep & (sims >= levels.near))
        else:
            keep = np.zeros(len(a), bool)
            unsure = np.flatnonzero(sims >= criterion.threshold)
        found = self._evidence(criterion, [(infos[int(a[n])], infos[int(b[n])]) for n in unsure])
        for n, evidence in zip(unsure, found, strict=True):
            keep[n] = evidence is not None and evidence.copy
        return a[keep], b[keep], sims[keep]

    def _member_evidence(self, criterion: Criterion, keep: ImageInfo, member: ImageInfo, sim: float) -> Evidence | None:
        if keep.id == member.id:
            return None
        if criterion.level in ("exact", "near") or (
            criterion.level == "similar" and sim < criterion.threshold and sim >= self.space.levels.near
        ):
            return self._evidence(criterion, [(keep, member)])[0]
        return None

    def _order(self, infos: dict[int, ImageInfo]) -> dict[int, Any]:
        """Sort keys (`keep_order`); the EXIF of images tied on pixels and size is read to break the tie."""
        ties: dict[tuple[int, int], list[int]] = {}
        for i, info in infos.items():
            ties.setdefault((info.width * info.height, info.byte_size), []).append(i)
        exif: dict[int, int] = {}
        for ids in ties.values():
            if len(ids) > 1:
                for i in ids:
                    try:
                        exif[i] = exif_richness(self.store.read_blob(infos[i].sha256))
                    except FileNotFoundError:
                        exif[i] = 0
        return {i: keep_order(info, exif.get(i, 0)) for i, info in infos.items()}

    # --- entry points -----------------------------------------------------------------------------------------

    def groups(
        self, level: str | None = None, threshold: float | None = None, among: Collection[int] | None = None
    ) -> DuplicateReport:
        """Every group of duplicates (two or more copies) at a level or threshold, largest first.

        `among` restricts the search to those ids (a folder's images, say).

        Raises:
            InvalidArgument: bad level or threshold.
        """
        criterion = self.space.resolve(level, threshold)
        among = frozenset(among) if among is not None else None
        decisions = load_decisions(self.store)
        key = (criterion, self._fingerprint(), among, decisions.key)
        with self._lock:
            if self._cache is not None and self._cache[0] == key:
                return DuplicateReport(criterion, self._cache[1])
        pairs = decisions.drop_dismissed(
            find_pairs(self.vectors, self.space, self._candidate_threshold(criterion), among)
        )
        infos = self._infos(np.concatenate([pairs[0], pairs[1]]).tolist())
        edges = self._verified_pairs(criterion, pairs, infos)
        keys = self._order(infos)

        def order(ids: Sequence[int]) -> dict[int, Any]:
            return {i: keys[i] for i in ids if i in keys}

        found = group_pairs(
            edges,
            self.vectors,
            self.space,
            criterion.threshold,
            order,
            linked=lambda keep, others, sims: self._linked(criterion, infos, keep, others, sims),
            apart=decisions.apart,
        )
        groups = [
            DuplicateGroup(
                keep,
                [
                    DuplicateMember(infos[i], s, self._member_evidence(criterion, infos[keep], infos[i], s))
                    for i, s in members
                ],
                criterion.level,
            )
            for keep, members in found
        ]
        grouped = {m.image.id for g in groups for m in g.members}
        singles = [i for i in self._multi_named(among) if i not in grouped]
        groups += [
            DuplicateGroup(i, [DuplicateMember(info, 1.0, identical_bytes())], criterion.level)
            for i, info in self._infos(singles).items()
        ]
        groups.sort(key=lambda g: (-g.size, g.keep))
        with self._lock:
            self._cache = (key, groups)
        return DuplicateReport(criterion, groups)

    def of(self, image_id: int, level: str | None = None, threshold: float | None = None) -> DuplicateReport:
        """The stored duplicates of one stored image, most similar first, as one group it keeps.

        Raises:
            InvalidArgument: bad level or threshold.
        """
        criterion = self.space.resolve(level, threshold)
        pairs = find_pairs(self.vectors, self.space, self._candidate_threshold(criterion), queries=[image_id])
        _, others, sims = load_decisions(self.store).drop_dismissed(pairs)
        infos = self._infos([image_id, *others.tolist()])
        if image_id not in infos:
            return DuplicateReport(criterion, [])
        present = [n for n, i in enumerate(others.tolist()) if i in infos]
        ids = [int(others[n]) for n in present]
        linked = self._linked(criterion, infos, image_id, ids, sims[present]) if ids else []
        me = infos[image_id]
        ranked = sorted(
            ((i, float(sims[n])) for i, n, ok in zip(ids, present, linked, strict=True) if ok),
            key=lambda m: (-m[1], m[0]),
        )
        members = [DuplicateMember(me, 1.0)]
        members += [DuplicateMember(infos[i], s, self._member_evidence(criterion, me, infos[i], s)) for i, s in ranked]
        return DuplicateReport(criterion, [DuplicateGroup(image_id, members, criterion.level)])

    def _fingerprint(self) -> tuple[int, str, tuple[int, int], tuple[int, int]]:
        """What the answer depends on: the live ids, and the names (a copy stored under a new name adds no
        vector, yet makes a group of exact copies). Names are only ever added, or removed with their image; the
        rows' count and newest id change with every purge (ids are never reused), which may remove the newest
        name without changing the live ids."""
        ids = self.vectors.ids()
        with self.store.session() as s:
            count, last = s.execute(select(func.count(NameRow.id), func.coalesce(func.max(NameRow.id), 0))).one()
            rows, newest = s.execute(select(func.count(ImageRow.id), func.coalesce(func.max(ImageRow.id), 0))).one()
        digest = hashlib.blake2b(ids.tobytes(), digest_size=16).hexdigest()
        return len(ids), digest, (int(count), int(last)), (int(rows), int(newest))

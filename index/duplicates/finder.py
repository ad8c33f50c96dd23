"""The library's entry points for near-duplicates: every group among the stored images, or one image's copies.

Only live images are grouped (the vector index holds no image in the trash), and a pair that a "not duplicates"
decision names is never a pair (`index.duplicates.decisions`)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from index.duplicates.candidates import find_pairs
from index.duplicates.decisions import load_decisions
from index.duplicates.grouping import DuplicateGroup, DuplicateMember, group_pairs, keep_order
from index.duplicates.space import DuplicateSpace
from index.storage.schema import ImageRow, NameRow
from index.storage.store import LIVE, ImageInfo, ImageStore
from index.vectors.faiss_index import VectorIndex


@dataclass(frozen=True)
class DuplicateReport:
    threshold: float
    groups: list[DuplicateGroup]  # largest first


class DuplicateFinder:
    """Groups of near-duplicates among the stored images; the last answer is kept until the index changes."""

    def __init__(self, store: ImageStore, vectors: VectorIndex, space: DuplicateSpace) -> None:
        self.store = store
        self.vectors = vectors
        self.space = space
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

    def groups(
        self, level: str | None = None, threshold: float | None = None, among: Collection[int] | None = None
    ) -> DuplicateReport:
        """Every group of near-duplicates (two or more copies), largest first.

        `among` restricts the search to those ids (a folder's images, say).

        Raises:
            InvalidArgument: bad level or threshold.
        """
        t = self.space.resolve(level, threshold)
        among = frozenset(among) if among is not None else None
        decisions = load_decisions(self.store)
        key = (t, self._fingerprint(), among, decisions.key)
        with self._lock:
            if self._cache is not None and self._cache[0] == key:
                return DuplicateReport(t, self._cache[1])
        infos: dict[int, ImageInfo] = {}

        def order(ids: Sequence[int]) -> dict[int, Any]:
            infos.update(self._infos(ids))
            return {i: keep_order(info) for i, info in infos.items()}

        pairs = decisions.drop_dismissed(find_pairs(self.vectors, self.space, t, among))
        found = group_pairs(pairs, self.vectors, self.space, t, order, apart=decisions.apart)
        groups = [DuplicateGroup(keep, [DuplicateMember(infos[i], s) for i, s in members]) for keep, members in found]
        grouped = {m.image.id for g in groups for m in g.members}
        singles = [i for i in self._multi_named(among) if i not in grouped]
        groups += [DuplicateGroup(i, [DuplicateMember(info, 1.0)]) for i, info in self._infos(singles).items()]
        groups.sort(key=lambda g: (-g.size, g.keep))
        with self._lock:
            self._cache = (key, groups)
        return DuplicateReport(t, groups)

    def of(self, image_id: int, level: str | None = None, threshold: float | None = None) -> DuplicateReport:
        """The stored near-duplicates of one stored image, most similar first, as one group it keeps.

        Raises:
            InvalidArgument: bad level or threshold.
        """
        t = self.space.resolve(level, threshold)
        pairs = find_pairs(self.vectors, self.space, t, queries=[image_id])
        _, others, sims = load_decisions(self.store).drop_dismissed(pairs)
        infos = self._infos([image_id, *others.tolist()])
        members = [DuplicateMember(infos[image_id], 1.0)] if image_id in infos else []
        ranked = sorted(zip(others.tolist(), sims.tolist(), strict=True), key=lambda m: (-m[1], m[0]))
        members += [DuplicateMember(infos[i], float(s)) for i, s in ranked if i in infos]
        return DuplicateReport(t, [DuplicateGroup(image_id, members)] if members else [])

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

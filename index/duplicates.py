"""Near-duplicate images: the duplicate similarity, its calibrated levels, and groups found through the vector index.

The duplicate similarity of two stored images is the cosine of the pooled-feature (GeM or mean) part of their
vectors: for a definition with logits (`gem3+logits1.3`: normalize(concat(g, 1.3 * l)) with g and l unit
vectors) the first `num_features` dimensions rescaled to unit length are exactly g. The logits part says what
an image shows, so two photos of the same kind of thing come close in it; the features part tells copies of one
photo apart from other photos of the same kind (measured by `tests/benchmarks/duplicates_eval.py`).

Candidate pairs come from the vector index, a chunk of queries at a time (never an N x N matrix): a range search
on a flat index, k nearest neighbours on HNSW, then each candidate is scored exactly on the features part.
Groups are guarded against chaining (A~B, B~C, A far from C): every member of a group is within the threshold
of the image the group keeps.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select

from index.errors import InvalidArgument
from index.model.registry import DuplicateLevels, EmbeddingDefinition
from index.storage.schema import NameRow
from index.storage.store import ImageInfo, ImageStore
from index.vectors.faiss_index import VectorIndex

LEVELS = ("exact", "near", "similar")
DEFAULT_LEVEL = "near"
# Queries per FAISS call: bounds the memory of one step (results and the gathered candidate vectors).
QUERY_CHUNK = 256
# Neighbours asked of an HNSW index per image; a group larger than this is still found through its members.
HNSW_NEIGHBOURS = 32
HNSW_EF_SEARCH = 32  # raised to the neighbours asked for; 64 cost 1.4x the time (measured at 30k)

# (a, b, similarity) arrays of stored-image ids, a < b.
Pairs = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]


@dataclass(frozen=True)
class DuplicateSpace:
    """Which part of the stored vectors the duplicate similarity compares, and its calibrated levels."""

    dims: int  # leading dimensions compared (the pooled features)
    dim: int  # the stored vector's width
    logits_weight: float  # weight of the logits part behind them (0 when there is none)
    levels: DuplicateLevels

    @classmethod
    def of(cls, definition: EmbeddingDefinition, dim: int, num_classes: int = 1000) -> DuplicateSpace:
        has_logits = definition.logits_weight > 0 and dim > num_classes
        dims = dim - num_classes if has_logits else dim
        return cls(dims, dim, definition.logits_weight if has_logits else 0.0, definition.duplicates)

    def resolve(self, level: str | None = None, threshold: float | None = None) -> float:
        """The threshold for a named level, or the given one (default: `near`).

        Raises:
            InvalidArgument: an unknown level, a threshold outside [0, 1], or both given.
        """
        if level is not None and threshold is not None:
            raise InvalidArgument("give either a level or a threshold, not both")
        if threshold is not None:
            if not 0.0 <= threshold <= 1.0:
                raise InvalidArgument(f"threshold must be between 0 and 1, got {threshold}")
            return float(threshold)
        level = level or DEFAULT_LEVEL
        if level not in LEVELS:
            raise InvalidArgument(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
        return self.levels.threshold(level)

    def radius(self, threshold: float) -> float:
        """An inner product of whole stored vectors that every pair at `threshold` reaches: the candidate radius.

        A stored vector is (g, w * l) / sqrt(1 + w^2), so the whole inner product is
        (g.g' + w^2 l.l') / (1 + w^2), at least (threshold + w^2 * logits_floor) / (1 + w^2).
        """
        if self.dims == self.dim:
            return threshold
        w2 = self.logits_weight**2
        return (threshold + w2 * self.levels.logits_floor) / (1 + w2)

    def part(self, vectors: NDArray[np.float32]) -> NDArray[np.float32]:
        """The compared part of stored vectors, each rescaled to unit length."""
        head = np.asarray(vectors, np.float32)[..., : self.dims]
        norms = np.linalg.norm(head, axis=-1, keepdims=True)
        return head / np.maximum(norms, 1e-12)

    def similarity(self, a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
        """Row-wise duplicate similarity of two stacks of stored vectors."""
        return np.einsum("ij,ij->i", self.part(a), self.part(b)).astype(np.float32)


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


# --- candidate pairs ------------------------------------------------------------------------------------


def find_pairs(
    vectors: VectorIndex,
    space: DuplicateSpace,
    threshold: float,
    among: Collection[int] | None = None,
    queries: Collection[int] | None = None,
) -> Pairs:
    """Every pair of stored images whose duplicate similarity is at least `threshold`.

    `among` restricts both images of a pair to those ids; `queries` restricts the first one (for one image's
    duplicates). Each pair comes once, as ids (a, b) with a < b unless `queries` is given (then a is the query).
    """
    radius = space.radius(threshold)
    out_a: list[NDArray[np.int64]] = []
    out_b: list[NDArray[np.int64]] = []
    out_s: list[NDArray[np.float32]] = []
    with vectors.stored() as (inner, ids, xb):
        if len(ids) == 0:
            return _empty_pairs()
        allowed = ids >= 0
        if among is not None:
            allowed &= np.isin(ids, np.fromiter(among, np.int64, len(among)))
        asking = allowed if queries is None else allowed & np.isin(ids, np.fromiter(queries, np.int64, len(queries)))
        positions = np.flatnonzero(asking)
        hnsw = vectors.meta.kind == "hnsw"
        params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, HNSW_NEIGHBOURS)) if hnsw else None
        for start in range(0, len(positions), QUERY_CHUNK):
            chunk = positions[start : start + QUERY_CHUNK]
            query = np.ascontiguousarray(xb[chunk])
            query_part = space.part(query)
            if hnsw:
                k = min(HNSW_NEIGHBOURS + 1, int(inner.ntotal))
                scores, found = inner.search(query, k, params=params)
                # A regular (queries x k) block: the features part scored without gathering the queries again.
                cand = xb[found.clip(0), : space.dims]
                sims = np.einsum("cf,ckf->ck", query_part, cand) / np.maximum(np.linalg.norm(cand, axis=2), 1e-12)
                rows, cols = np.repeat(chunk, k), found.reshape(-1)
                scores, sims = scores.reshape(-1), sims.reshape(-1).astype(np.float32)
            else:
                lims, scores, cols = inner.range_search(query, radius)
                local = np.repeat(np.arange(len(chunk)), np.diff(lims).astype(np.int64))
                rows = chunk[local]
                cand = xb[cols, : space.dims]
                dots = np.einsum("ij,ij->i", query_part[local], cand)
                sims = (dots / np.maximum(np.linalg.norm(cand, axis=1), 1e-12)).astype(np.float32)
            keep = (cols >= 0) & (scores >= radius) & (sims >= threshold)
            keep[keep] &= allowed[cols[keep]] & (cols[keep] != rows[keep])
            rows, cols, sims = rows[keep], cols[keep].astype(np.int64), sims[keep]
            if queries is None:  # each unordered pair once (HNSW may find it from one side only)
                rows, cols = np.minimum(rows, cols), np.maximum(rows, cols)
            out_a.append(ids[rows])
            out_b.append(ids[cols])
            out_s.append(sims)
    if not out_a:
        return _empty_pairs()
    a, b, s = np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_s)
    if queries is None:
        a, b = np.minimum(a, b), np.maximum(a, b)
    _, first = np.unique(np.stack([a, b], axis=1), axis=0, return_index=True)
    return a[first], b[first], s[first]


def _empty_pairs() -> Pairs:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)


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
) -> list[tuple[int, list[tuple[int, float]]]]:
    """Groups of ids from duplicate pairs: (kept id, [(id, similarity to the kept one)], kept first).

    `order` gives each id a sort key, smallest for the image to keep. Guarded (the default): within each
    connected component, the image to keep takes every member within `threshold` of itself, and the rest
    is grouped again the same way, so no member is further than `threshold` from the kept image. Single-link
    (`guarded=False`) keeps whole components, chains included.
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
            taken = [n for n in range(len(rest)) if not guarded or sims[n] >= threshold]
            if len(taken) > 1:
                members = sorted(((rest[n], float(sims[n])) for n in taken[1:]), key=lambda m: (-m[1], keys[m[0]]))
                out.append((keep, [(keep, 1.0), *members]))
                gone = set(taken)
            else:
                gone = {0}
            rest = [i for n, i in enumerate(rest) if n not in gone]
    return out


# --- the library's entry points -------------------------------------------------------------------------


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
        """Rows stored under several names or paths: exact byte copies."""
        with self.store.session() as s:
            query = select(NameRow.image_id).group_by(NameRow.image_id).having(func.count() > 1)
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
        key = (t, self._fingerprint(), among)
        with self._lock:
            if self._cache is not None and self._cache[0] == key:
                return DuplicateReport(t, self._cache[1])
        infos: dict[int, ImageInfo] = {}

        def order(ids: Sequence[int]) -> dict[int, Any]:
            infos.update(self._infos(ids))
            return {i: keep_order(info) for i, info in infos.items()}

        found = group_pairs(find_pairs(self.vectors, self.space, t, among), self.vectors, self.space, t, order)
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
        _, others, sims = find_pairs(self.vectors, self.space, t, queries=[image_id])
        infos = self._infos([image_id, *others.tolist()])
        members = [DuplicateMember(infos[image_id], 1.0)] if image_id in infos else []
        ranked = sorted(zip(others.tolist(), sims.tolist(), strict=True), key=lambda m: (-m[1], m[0]))
        members += [DuplicateMember(infos[i], float(s)) for i, s in ranked if i in infos]
        return DuplicateReport(t, [DuplicateGroup(image_id, members)] if members else [])

    def _fingerprint(self) -> tuple[int, str, tuple[int, int]]:
        """What the answer depends on: the stored ids, and the names (a copy stored under a new name adds no
        vector, yet makes a group of exact copies). Names are only ever added, or removed with their image."""
        ids = self.vectors.ids()
        with self.store.session() as s:
            count, last = s.execute(select(func.count(NameRow.id), func.coalesce(func.max(NameRow.id), 0))).one()
        return len(ids), hashlib.blake2b(ids.tobytes(), digest_size=16).hexdigest(), (int(count), int(last))

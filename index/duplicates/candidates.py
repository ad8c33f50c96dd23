"""Candidate pairs from the stored vectors, never an N x N matrix.

A whole pass over many images (above `JOIN_MIN`) joins k-means cells of the features part: each image is
compared with every image of its nearest cell that has it among its `JOIN_PROBES` nearest, one matrix
product per cell, which finds pairs a per-image k-nearest-neighbour search on an HNSW graph misses when
that graph is large (0.836 of planted copy pairs at a million vectors; measured in
`tests/benchmarks/bench_duplicates.py`). Smaller passes and one image's duplicates ask the vector index, a
chunk of queries at a time: a range search on a flat index, k nearest neighbours on HNSW. Every candidate
is scored exactly on the features part.

A vector server (Milvus) is asked itself (`server_pairs`), never copied: each stored vector's features part, a
batch at a time, goes to its own search, and the pairs it finds are scored and kept exactly as the FAISS flat
path keeps them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterator
from typing import Protocol

import faiss
import numpy as np
from numpy.typing import NDArray

from index.duplicates.space import DuplicateSpace
from index.vectors.faiss_index import IndexMeta, VectorIndex

log = logging.getLogger(__name__)

# Queries per FAISS call: bounds the memory of one step (results and the gathered candidate vectors).
QUERY_CHUNK = 256
# Neighbours asked of an HNSW index per image; a group larger than this is still found through its members.
HNSW_NEIGHBOURS = 32
HNSW_EF_SEARCH = 32  # raised to the neighbours asked for; 64 cost 1.4x the time (measured at 30k)

# A whole pass over more images than this joins k-means cells instead of searching image by image.
JOIN_MIN = 20_000
# Cells an image joins (the nearest first): a copy that falls just across a cell border is still met. Of the
# copy pairs a range search finds at `near` among the evaluation's 3650 real photos, 3 cells keep 0.993, 5 keep
# 0.9965, 8 keep 0.9993 and 12 all (`tests/benchmarks/duplicates_eval.py`'s set); the cost grows as its root.
JOIN_PROBES = 8
# Training images per cell for k-means (a sample of the stored vectors), and its iterations.
JOIN_TRAIN_PER_CELL = 40
JOIN_ITERATIONS = 10
# Floats in one similarity block (queries x members of a cell): bounds the memory of a large cell.
JOIN_BLOCK = 1 << 24

# Stored vectors read from a vector server, and asked about, per step: bounds the memory of one step.
SERVER_BATCH = 256
# Neighbours first asked of the server per stored vector (range search or not, a search returns at most this
# many); where every one is within range, that vector is asked again with SERVER_GROWTH times as many.
SERVER_NEIGHBOURS = 16
SERVER_GROWTH = 4
SERVER_TOPK = 16384  # Milvus's limit on the results of one query
# An `among` of up to this many ids goes to the server as a filter; a larger one is applied here.
SERVER_FILTER_IDS = 4096
# Below the features-part radius asked of the server (float rounding): every candidate is then scored here.
SERVER_SLACK = 1e-3

# (a, b, similarity) arrays of stored-image ids, a < b.
Pairs = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]


class ServerVectors(Protocol):
    """A vector server that searches itself (`MilvusVectorStore`): what a duplicate pass asks of it."""

    meta: IndexMeta

    @property
    def uses_range_search(self) -> bool: ...
    def ids(self) -> NDArray[np.int64]: ...
    def vectors_of(self, ids: NDArray[np.int64]) -> NDArray[np.float32]: ...
    def stored_batches(
        self, size: int, among: NDArray[np.int64] | None = None
    ) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]: ...
    def within(
        self, queries: NDArray[np.float32], radius: float, k: int, allowed: NDArray[np.int64] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]: ...


# What duplicates are found in: the in-process FAISS index, or a vector server.
StoredVectors = VectorIndex | ServerVectors


def find_pairs(
    vectors: StoredVectors,
    space: DuplicateSpace,
    threshold: float,
    among: Collection[int] | None = None,
    queries: Collection[int] | None = None,
    *,
    cells: bool | None = None,
) -> Pairs:
    """Every pair of stored images whose duplicate similarity is at least `threshold`.

    `among` restricts both images of a pair to those ids; `queries` restricts the first one (for one image's
    duplicates). Each pair comes once, as ids (a, b) with a < b unless `queries` is given (then a is the query).
    `cells` chooses the k-means cell join (True) or the vector index's own search (False) for a whole pass;
    by default the join above `JOIN_MIN` images. A vector server is always asked itself (`server_pairs`).
    """
    if not isinstance(vectors, VectorIndex):
        return server_pairs(vectors, space, threshold, among, queries)
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
        if queries is None and (cells if cells is not None else len(positions) > JOIN_MIN):
            for rows, cols, sims in _cell_join(xb, positions, space, threshold):
                out_a.append(ids[rows])
                out_b.append(ids[cols])
                out_s.append(sims)
            positions = positions[:0]
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


def server_pairs(
    vectors: ServerVectors,
    space: DuplicateSpace,
    threshold: float,
    among: Collection[int] | None = None,
    queries: Collection[int] | None = None,
) -> Pairs:
    """`find_pairs` on a vector server, which searches itself: no copy of the stored vectors is made.

    Each stored vector (of `queries`, or of `among`), `SERVER_BATCH` at a time, is asked with its logits part
    zeroed: the stored vectors' inner product with it is their features part's cosine times the features
    part's length, the same for every stored vector, so the server's own search (a range search where it has
    one, else k-NN) ranks by the duplicate similarity. What it finds is then scored and kept exactly as the
    FAISS flat path does (the whole inner product at least `space.radius`, the features cosine at least
    `threshold`), so both backends give the same pairs.
    """
    radius = space.radius(threshold)
    floor = threshold * space.features_length - SERVER_SLACK
    allowed = None if among is None else np.unique(np.fromiter(among, np.int64, len(among)))
    asking = allowed
    if queries is not None:
        asked = np.unique(np.fromiter(queries, np.int64, len(queries)))
        asking = asked if allowed is None else np.intersect1d(asked, allowed)
    if asking is not None and len(asking) == 0:
        return _empty_pairs()
    server_filter = allowed if allowed is not None and len(allowed) <= SERVER_FILTER_IDS else None
    out_a: list[NDArray[np.int64]] = []
    out_b: list[NDArray[np.int64]] = []
    out_s: list[NDArray[np.float32]] = []
    for ids, xb in vectors.stored_batches(SERVER_BATCH, asking):
        probes = np.zeros_like(xb)
        probes[:, : space.dims] = space.part(xb)
        rows, cols = _server_hits(vectors, probes, floor, server_filter)
        keep = cols != ids[rows]
        if allowed is not None:
            keep &= np.isin(cols, allowed)
        rows, cols = rows[keep], cols[keep]
        found, cand_vectors = _gathered(vectors, ids, xb, cols)
        present = np.isin(cols, found)  # one deleted meanwhile is no candidate
        rows, cols = rows[present], cols[present]
        if len(cols) == 0:
            continue
        cand = cand_vectors[np.searchsorted(found, cols)]
        whole = np.einsum("ij,ij->i", xb[rows], cand)
        head = cand[:, : space.dims]
        dots = np.einsum("ij,ij->i", probes[rows, : space.dims], head)
        sims = (dots / np.maximum(np.linalg.norm(head, axis=1), 1e-12)).astype(np.float32)
        keep = (whole >= radius) & (sims >= threshold)
        a, b = ids[rows[keep]], cols[keep]
        if queries is None:
            a, b = np.minimum(a, b), np.maximum(a, b)
        out_a.append(a)
        out_b.append(b)
        out_s.append(sims[keep])
    if not out_a:
        return _empty_pairs()
    a, b, s = np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_s)
    _, first = np.unique(np.stack([a, b], axis=1), axis=0, return_index=True)
    return a[first], b[first], s[first]


def _server_hits(
    vectors: ServerVectors, probes: NDArray[np.float32], floor: float, allowed: NDArray[np.int64] | None
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(probe row, stored id) of every stored vector whose inner product with a probe is at least `floor`.

    A probe whose hits are all within `floor` may have more beyond them: it is asked again, `SERVER_GROWTH`
    times as many, until one falls outside (or the server's limit is reached).
    """
    out_rows: list[NDArray[np.int64]] = []
    out_ids: list[NDArray[np.int64]] = []
    pending = np.arange(len(probes))
    k = SERVER_NEIGHBOURS
    while len(pending):
        scores, found = vectors.within(probes[pending], floor, k, allowed)
        inside = (found >= 0) & (scores >= floor)
        full = inside[:, -1] if k < SERVER_TOPK else np.zeros(len(pending), bool)
        if k >= SERVER_TOPK and inside[:, -1].any():
            cut = int(inside[:, -1].sum())
            log.warning("%d images have more than %d candidate duplicates; the rest are not compared", cut, k)
        r, c = np.nonzero(inside & ~full[:, None])
        out_rows.append(pending[r])
        out_ids.append(found[r, c])
        pending = pending[full]
        k = min(k * SERVER_GROWTH, SERVER_TOPK)
    return np.concatenate(out_rows), np.concatenate(out_ids)


def _gathered(
    vectors: ServerVectors, ids: NDArray[np.int64], xb: NDArray[np.float32], wanted: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """(sorted ids, their vectors) of those of `wanted` still stored: the batch's own, the others read."""
    wanted = np.unique(wanted)
    mine = np.isin(wanted, ids)
    order = np.argsort(ids)
    found = [wanted[mine]]
    stacked = [xb[order[np.searchsorted(ids[order], wanted[mine])]]]
    for more, batch in vectors.stored_batches(SERVER_BATCH, wanted[~mine]):
        found.append(more)
        stacked.append(batch)
    all_ids, all_vectors = np.concatenate(found), np.concatenate(stacked)
    by_id = np.argsort(all_ids)
    return all_ids[by_id], all_vectors[by_id]


def _cell_join(
    xb: NDArray[np.float32], positions: NDArray[np.int64], space: DuplicateSpace, threshold: float
) -> Iterator[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]]:
    """(rows, cols, similarity) by position: the pairs at `threshold` among `positions`, one k-means cell at a time.

    With about sqrt(probes * n) cells, assigning the images and joining the cells cost about the same
    (n x cells against probes x n x n / cells products), and no step holds more than a cell's block.
    """
    n = len(positions)
    cells = max(1, round(math.sqrt(JOIN_PROBES * n)))
    probes = min(JOIN_PROBES, cells)
    rng = np.random.default_rng(0)
    train = min(n, cells * JOIN_TRAIN_PER_CELL)
    sample = np.sort(rng.choice(positions, train, replace=False))
    kmeans = faiss.Kmeans(
        space.dims,
        cells,
        niter=JOIN_ITERATIONS,
        spherical=True,
        seed=1,
        max_points_per_centroid=JOIN_TRAIN_PER_CELL,
        min_points_per_centroid=1,
    )
    kmeans.train(np.ascontiguousarray(space.part(xb[sample, : space.dims])))
    centroids = faiss.IndexFlatIP(space.dims)
    centroids.add(kmeans.centroids)
    nearest = np.empty((n, probes), np.int64)
    for start in range(0, n, QUERY_CHUNK * 16):
        chunk = positions[start : start + QUERY_CHUNK * 16]
        _, nearest[start : start + len(chunk)] = centroids.search(
            np.ascontiguousarray(space.part(xb[chunk, : space.dims])), probes
        )
    # Members of a cell: every image with it among its nearest cells; queries: the images whose nearest it is.
    member_cell = nearest.reshape(-1)
    order = np.argsort(member_cell, kind="stable")
    members = order // probes
    member_bounds = np.searchsorted(member_cell[order], np.arange(cells + 1))
    queries = np.argsort(nearest[:, 0], kind="stable")
    query_bounds = np.searchsorted(nearest[queries, 0], np.arange(cells + 1))
    for cell in range(cells):
        asked = queries[query_bounds[cell] : query_bounds[cell + 1]]
        met = members[member_bounds[cell] : member_bounds[cell + 1]]
        if len(asked) == 0 or len(met) < 2:
            continue
        met_part = space.part(xb[positions[met], : space.dims])
        step = max(1, JOIN_BLOCK // len(met))
        for start in range(0, len(asked), step):
            block = asked[start : start + step]
            sims = space.part(xb[positions[block], : space.dims]) @ met_part.T
            r, c = np.nonzero(sims >= threshold)
            keep = block[r] != met[c]
            r, c = r[keep], c[keep]
            yield positions[block[r]], positions[met[c]], sims[r, c].astype(np.float32)


def _empty_pairs() -> Pairs:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)

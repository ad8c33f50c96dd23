"""Candidate pairs from the stored vectors, never an N x N matrix.

A whole pass over many images (above `JOIN_MIN`) joins k-means cells of the features part: each image is
compared with every image of its nearest cell that has it among its `JOIN_PROBES` nearest, one matrix
product per cell, which finds pairs a per-image k-nearest-neighbour search on an HNSW graph misses when
that graph is large (0.836 of planted copy pairs at a million vectors; measured in
`tests/benchmarks/bench_duplicates.py`). Smaller passes and one image's duplicates ask the vector index, a
chunk of queries at a time: a range search on a flat index, k nearest neighbours on HNSW. Every candidate
is scored exactly on the features part.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator

import faiss
import numpy as np
from numpy.typing import NDArray

from index.duplicates.space import DuplicateSpace
from index.vectors.faiss_index import VectorIndex

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

# (a, b, similarity) arrays of stored-image ids, a < b.
Pairs = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]


def find_pairs(
    vectors: VectorIndex,
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
    by default the join above `JOIN_MIN` images.
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

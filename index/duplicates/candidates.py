"""Candidate pairs from the vector index, a chunk of queries at a time (never an N x N matrix): a range search
on a flat index, k nearest neighbours on HNSW, then each candidate is scored exactly on the features part."""

from __future__ import annotations

from collections.abc import Collection

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

# (a, b, similarity) arrays of stored-image ids, a < b.
Pairs = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]


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

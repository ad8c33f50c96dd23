"""Near-duplicate grouping at scale, on synthetic vectors with planted copies.

    python -m tests.benchmarks.bench_duplicates [--sizes 100000] [--dim 2280] [--kind auto]

The vectors imitate the default embedding: a features part (1280-d) and, at 2280-d, a logits part
(1000-d, weight 1.3), each made of a class centre (1000 classes: same-class images are semantic neighbours,
not copies) plus the image's own direction. A tenth of the images get 1-4 planted copies (the features part
perturbed to cosine 0.93-0.995). The vector index is built as the service builds it (`auto`: flat up to
20,000 vectors, HNSW above; build time reported apart, since a real index already exists), then the library
finds every group (`index.duplicates.find_pairs` + `group_pairs`, guarded): that time is the figure, with
the recall of the planted pairs and the peak memory, for each candidate search side by side (`--candidates`:
the k-means cell join the library uses for a whole pass above 20,000 images, and the vector index's own
search, a k-NN per image on HNSW). The join reads the stored vectors, not the graph: `--kind flat` skips an
HNSW build it does not use. Prints a table and writes bench-results/bench-duplicates.json.

    python -m tests.benchmarks.bench_duplicates --backend milvus-server --sizes 5000

`--backend milvus` (a milvus-lite file) and `--backend milvus-server` (a local Milvus 2.3 standalone server,
`deploy/local_milvus.py`; needs root) put the same vectors in a Milvus collection too and find the pairs both
ways side by side: FAISS in this process, and the server's own search (`index.duplicates.server_pairs`, a batch
of stored vectors at a time), with the time, the pairs each finds, whether they agree, and the peak resident
memory of this process and of the server's processes (sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import psutil
from numpy.typing import NDArray

from index.config import Settings
from index.duplicates import DuplicateSpace, Pairs, find_pairs, group_pairs
from index.model.registry import resolve_embedding
from index.storage.store import ImageStore
from index.vectors.faiss_index import IndexMeta, VectorIndex

FEATURES = 1280
CLASSES = 1000
LOGITS_WEIGHT = 1.3
CHUNK = 50_000
RESULTS = Path(__file__).resolve().parents[2] / "bench-results" / "bench-duplicates.json"


def _unit(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _noise(rng: np.random.Generator, n: int, d: int) -> NDArray[np.float32]:
    return _unit(rng.standard_normal((n, d), dtype=np.float32))


def synthetic(
    n: int, dim: int, seed: int = 0
) -> tuple[list[tuple[NDArray[np.int64], NDArray[np.float32]]], set[tuple[int, int]]]:
    """Chunks of (ids, stored vectors) adding up to n, and the planted duplicate pairs (a < b)."""
    rng = np.random.default_rng(seed)
    feat_centres = _noise(rng, CLASSES, FEATURES)
    logit_centres = _noise(rng, CLASSES, CLASSES) if dim > FEATURES else None
    chunks, planted = [], set()
    next_id = 1
    while next_id <= n:
        # About 0.25 copies per original: the last chunk (all of a small run) leaves room for its copies.
        originals = min(CHUNK // 2, max(1, int((n - next_id + 1) / 1.25)))
        cls = rng.integers(0, CLASSES, originals)
        g = _unit(np.sqrt(0.4) * feat_centres[cls] + np.sqrt(0.6) * _noise(rng, originals, FEATURES))
        copies_of = np.repeat(
            np.arange(originals), np.where(rng.random(originals) < 0.1, rng.integers(1, 5, originals), 0)
        )
        copies_of = copies_of[: max(0, min(len(copies_of), n - next_id + 1 - originals))]
        sigma = rng.uniform(0.1, 0.38, len(copies_of)).astype(np.float32)[:, None]
        g_all = np.concatenate([g, _unit(g[copies_of] + sigma * _noise(rng, len(copies_of), FEATURES))])
        parts = [g_all]
        if logit_centres is not None:
            l0 = _unit(np.sqrt(0.7) * logit_centres[cls] + np.sqrt(0.3) * _noise(rng, originals, CLASSES))
            l_copies = _unit(l0[copies_of] + 0.3 * _noise(rng, len(copies_of), CLASSES))
            parts.append(LOGITS_WEIGHT * np.concatenate([l0, l_copies]))
        vectors = _unit(np.concatenate(parts, axis=1))
        ids = np.arange(next_id, next_id + len(vectors), dtype=np.int64)
        members: dict[int, list[int]] = {}
        for c, o in enumerate(copies_of.tolist()):
            members.setdefault(o, [int(ids[o])]).append(int(ids[originals + c]))
        for group in members.values():
            planted.update((a, b) for a in group for b in group if a < b)
        chunks.append((ids, vectors))
        next_id += len(vectors)
    return chunks, planted


def run(n: int, dim: int, kind: str, threshold: float | None, searches: Sequence[str]) -> list[dict[str, Any]]:
    """One row per candidate search ("cells": the k-means cell join; "index": the vector index's own search)."""
    chunks, planted = synthetic(n, dim)
    if kind == "auto":
        kind = "flat" if n <= 20_000 else "hnsw"
    definition = resolve_embedding("default" if dim > FEATURES else "gem")
    space = DuplicateSpace.of(definition, dim)
    t = threshold if threshold is not None else space.levels.near
    vectors = VectorIndex(IndexMeta("bench", dim, kind))
    started = time.perf_counter()
    for ids, vecs in chunks:
        vectors.add(ids, vecs)
    build = time.perf_counter() - started
    del chunks
    # Planted pairs whose features part really reached the threshold are the ones that should be found.
    gemsims = {}
    if planted:
        sample = list(planted)
        a = vectors.vectors_of(np.array([p[0] for p in sample])), vectors.vectors_of(np.array([p[1] for p in sample]))
        sims = space.similarity(*a)
        gemsims = {p: float(s) for p, s in zip(sample, sims, strict=True)}
    reachable = {p for p, s in gemsims.items() if s >= t}
    rows = []
    for search in searches:
        rss_before = psutil.Process().memory_info().rss
        load = os.getloadavg()[0]
        started = time.perf_counter()
        pairs = find_pairs(vectors, space, t, cells=search == "cells")
        search_s = time.perf_counter() - started
        groups = group_pairs(pairs, vectors, space, t, lambda ids: {i: i for i in ids})
        seconds = time.perf_counter() - started
        found = set(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))
        rows.append(
            {
                "vectors": n,
                "dim": dim,
                "compared_dims": space.dims,
                "index": kind,
                "candidates": search,
                "threshold": t,
                "build_seconds": build,
                "pairs_seconds": search_s,
                "duplicates_seconds": seconds,
                "pairs_found": len(found),
                "planted_pairs_over_threshold": len(reachable),
                "planted_recall": len(found & reachable) / len(reachable) if reachable else 1.0,
                "found_pairs_not_planted": len(found - planted),
                "groups": len(groups),
                "load_avg_at_start": load,
                "rss_gb_before": rss_before / 2**30,
                "peak_rss_gb": psutil.Process().memory_info().rss / 2**30,
            }
        )
    return rows


class PeakRss:
    """The peak resident memory of some processes (each with its children), sampled in a thread while in use."""

    def __init__(self, **roots: int) -> None:
        self.roots = roots
        self.peak = dict.fromkeys(roots, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _rss(self, pid: int) -> int:
        """A root's memory with its children's, less any other root's tree (a server started from this process)."""
        try:
            trees = {r: self._tree(r) for r in self.roots.values()}
            others = {p for r, tree in trees.items() if r != pid and pid not in tree for p in tree}
            total = 0
            for child in trees[pid] - others:
                with contextlib.suppress(psutil.Error):  # ended meanwhile
                    total += psutil.Process(child).memory_info().rss
            return total
        except psutil.Error:
            return 0

    @staticmethod
    def _tree(pid: int) -> set[int]:
        root = psutil.Process(pid)
        return {pid, *(c.pid for c in root.children(recursive=True))}

    def _sample(self) -> None:
        while True:
            for name, pid in self.roots.items():
                self.peak[name] = max(self.peak[name], self._rss(pid))
            if self._stop.wait(0.02):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for name, pid in self.roots.items():  # a last sample, after the work
            self.peak[name] = max(self.peak[name], self._rss(pid))


def run_backends(n: int, dim: int, kind: str, threshold: float | None, backend: str) -> list[dict[str, Any]]:
    """Two rows on the same vectors: FAISS (the library's default search) and the Milvus collection's own search."""
    from deploy.local_milvus import LocalMilvus
    from index.vectors.milvus import MilvusVectorStore

    chunks, planted = synthetic(n, dim)
    if kind == "auto":
        kind = "flat" if n <= 20_000 else "hnsw"
    definition = resolve_embedding("default" if dim > FEATURES else "gem")
    space = DuplicateSpace.of(definition, dim)
    t = threshold if threshold is not None else space.levels.near
    work = Path(tempfile.mkdtemp(prefix="bench-duplicates-"))
    server = LocalMilvus(work / "milvus-server") if backend == "milvus-server" else None
    rows = []
    try:
        uri = server.start().uri if server is not None else str(work / "milvus.db")
        store = ImageStore(work / "data")
        settings = Settings(
            data_dir=work / "data",
            vector_store="milvus",
            milvus_uri=uri,
            milvus_collection="bench_duplicates",
            milvus_index="FLAT" if kind == "flat" else "HNSW",
        )
        milvus = MilvusVectorStore(settings, store, IndexMeta("bench", dim, "milvus"))
        faiss_index = VectorIndex(IndexMeta("bench", dim, kind))
        builds = {}
        started = time.perf_counter()
        for ids, vecs in chunks:
            faiss_index.add(ids, vecs)
        builds["faiss"] = time.perf_counter() - started
        started = time.perf_counter()
        for ids, vecs in chunks:
            milvus.add(ids, vecs)
        milvus.save()
        builds[backend] = time.perf_counter() - started
        del chunks
        sample = list(planted)
        gemsims = space.similarity(
            faiss_index.vectors_of(np.array([p[0] for p in sample])),
            faiss_index.vectors_of(np.array([p[1] for p in sample])),
        )
        reachable = {p for p, s in zip(sample, gemsims.tolist(), strict=True) if s >= t}
        reference: set[tuple[int, int]] | None = None
        searches: list[tuple[str, Callable[[], Pairs], Any]] = [
            ("faiss", lambda: find_pairs(faiss_index, space, t), faiss_index),
            (backend, lambda: find_pairs(milvus, space, t), milvus),
        ]
        for name, search, vectors in searches:
            roots = {"process": os.getpid()}
            if server is not None and server.pid is not None:
                roots["server"] = server.pid
            with PeakRss(**roots) as before:  # one sample
                pass
            load = os.getloadavg()[0]
            with PeakRss(**roots) as peak:
                started = time.perf_counter()
                pairs = search()
                search_s = time.perf_counter() - started
                groups = group_pairs(pairs, vectors, space, t, lambda ids: {i: i for i in ids})
                seconds = time.perf_counter() - started
            found = set(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))
            reference = found if reference is None else reference
            rows.append(
                {
                    "vectors": n,
                    "dim": dim,
                    "compared_dims": space.dims,
                    "index": kind,
                    "backend": name,
                    "range_search": bool(milvus.uses_range_search) if name != "faiss" else None,
                    "threshold": t,
                    "build_seconds": builds[name],
                    "pairs_seconds": search_s,
                    "duplicates_seconds": seconds,
                    "pairs_found": len(found),
                    "pairs_as_faiss": found == reference,
                    "pairs_missing_vs_faiss": len(reference - found),
                    "pairs_extra_vs_faiss": len(found - reference),
                    "planted_pairs_over_threshold": len(reachable),
                    "planted_recall": len(found & reachable) / len(reachable) if reachable else 1.0,
                    "groups": len(groups),
                    "load_avg_at_start": load,
                    "rss_gb_before": before.peak["process"] / 2**30,
                    "peak_rss_gb": peak.peak["process"] / 2**30,
                    "server_rss_gb_before": before.peak["server"] / 2**30 if "server" in roots else None,
                    "server_peak_rss_gb": peak.peak["server"] / 2**30 if "server" in roots else None,
                }
            )
        milvus.drop()
        milvus.close()
        store.close()
    finally:
        if server is not None:
            server.close()
    return rows


def print_backends(rows: Sequence[dict[str, Any]]) -> None:
    def gb(x: float | None) -> str:
        return "-" if x is None else f"{x * 1024:.0f} MB"

    print(
        "| vectors | dim | index | backend | insert (not counted) | pairs | duplicates | pairs found | same as FAISS "
        "| planted recall | peak RSS (this process, before) | peak RSS (server, before) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        search = "" if r["range_search"] is None else (" (range search)" if r["range_search"] else " (k-NN)")
        print(
            f"| {r['vectors']:,} | {r['dim']} | {r['index']} | {r['backend']}{search} | {r['build_seconds']:.1f} s | "
            f"{r['pairs_seconds']:.1f} s | {r['duplicates_seconds']:.1f} s | {r['pairs_found']:,} | "
            f"{'yes' if r['pairs_as_faiss'] else 'no'} (-{r['pairs_missing_vs_faiss']}/+{r['pairs_extra_vs_faiss']}) | "
            f"{r['planted_recall']:.4f} | {gb(r['peak_rss_gb'])} ({gb(r['rss_gb_before'])}) | "
            f"{gb(r['server_peak_rss_gb'])} ({gb(r['server_rss_gb_before'])}) |"
        )


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "fma")
                return " ".join(f for f in line.split(":", 1)[1].split() if f in wanted)
    except OSError:
        pass
    return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_duplicates", description=__doc__)
    p.add_argument("--sizes", nargs="+", type=int, default=[100_000], help="stored vectors (e.g. 100000 1000000)")
    p.add_argument("--dim", type=int, default=2280, help="2280 (the default embedding) or 1280 (its features part)")
    p.add_argument("--kind", choices=["auto", "flat", "hnsw"], default="auto")
    p.add_argument("--threshold", type=float, default=None, help="default: the definition's `near` level")
    p.add_argument(
        "--candidates",
        nargs="+",
        choices=["cells", "index"],
        default=["cells", "index"],
        help="the k-means cell join (the library's whole pass above 20,000 images), the vector index's own search",
    )
    p.add_argument(
        "--backend",
        choices=["faiss", "milvus", "milvus-server"],
        default="faiss",
        help="also a Milvus collection (a milvus-lite file, or a local Milvus server): both searches side by side",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "flags": cpu_flags(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "load_avg_at_start": os.getloadavg(),
    }
    print(f"machine: {info}")
    rows = []
    if args.backend != "faiss":
        for n in args.sizes:
            rows += run_backends(n, args.dim, args.kind, args.threshold, args.backend)
        print_backends(rows)
        return _write(args, info, rows)
    for n in args.sizes:
        for r in run(n, args.dim, args.kind, args.threshold, args.candidates):
            rows.append(r)
            print(f"  {n} x {args.dim} {r['index']}, {r['candidates']}: {r['duplicates_seconds']:.1f} s", flush=True)
    header = (
        "| vectors | dim | index | candidates | build (not counted) | duplicates | time vs first row of its size "
        "| planted recall | groups | peak RSS | load average |"
    )
    print(header + "\n|---|---|---|---|---|---|---|---|---|---|---|")
    first: dict[int, float] = {}
    for r in rows:
        base = first.setdefault(r["vectors"], r["duplicates_seconds"])
        print(
            f"| {r['vectors']:,} | {r['dim']} | {r['index']} | {r['candidates']} | {r['build_seconds']:.1f} s | "
            f"{r['duplicates_seconds']:.1f} s | {r['duplicates_seconds'] / base:.2f} | {r['planted_recall']:.4f} | "
            f"{r['groups']:,} | {r['peak_rss_gb']:.1f} GB | {r['load_avg_at_start']:.1f} |"
        )
    return _write(args, info, rows)


def _write(args: argparse.Namespace, info: dict[str, Any], rows: list[dict[str, Any]]) -> int:
    print(f"load average at the end: {os.getloadavg()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    existing["runs"].append({"machine": info, "args": vars(args) | {"out": str(args.out)}, "results": rows})
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

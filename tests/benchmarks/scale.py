"""Past one machine, measured: Ray batch ingest with 1 and 2 model workers, and search latency, memory and
disk per vector for FAISS (flat, HNSW) and Milvus (milvus-lite, flat). Prints tables, writes JSON. Not a test.

  .venv/bin/python -m tests.benchmarks.scale --images 300 --sizes 20000,100000
  .venv/bin/python -m tests.benchmarks.scale --only search --sizes 1000000 --faiss_kinds hnsw --queries 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT.parent / "shared" / "datasets" / "imagenet-sample"
DIM = 2280  # the default embedding's width


def machine() -> dict[str, Any]:
    flags = ""
    with contextlib.suppress(OSError, StopIteration):
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma")
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "cpu_flags": [f for f in wanted if f" {f}" in flags],
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_start": os.getloadavg(),
    }


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def print_table(title: str, header: Sequence[str], rows: list[Sequence[Any]]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))


def bench_ingest(images: int, workers: Sequence[int], work: Path) -> list[dict[str, Any]]:
    """In-process ingest (one process, the CLI's path) against Ray batch ingest with n model workers.

    `seconds` is the whole run (Ray start and model loading in each actor included); `steady img/s` counts
    from the first stored batch to the last, the rate a long run approaches.
    """
    import ray

    from index.batch import batch_ingest
    from index.config import Settings
    from index.service import ImageIndex

    folder = work / "photos"
    folder.mkdir()
    for p in sorted(p for p in SAMPLE.iterdir() if p.suffix == ".JPEG")[:images]:
        (folder / p.name).symlink_to(p)
    results = []
    start = time.perf_counter()
    with ImageIndex(Settings(data_dir=work / "data-in-process")) as index:
        stored = [r for r in index.ingest_folder(folder) if r.status == "added"]
    seconds = time.perf_counter() - start
    results.append(_ingest_row("in-process (no Ray)", len(stored), seconds, None))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    for n in workers:
        marks: list[tuple[float, int]] = []
        settings = Settings(data_dir=work / f"data-{n}")
        report = batch_ingest(
            settings,
            folder,
            workers=n,
            batch_size=32,
            progress=lambda k, marks=marks: marks.append((time.perf_counter(), k)),
        )
        steady = None
        if len(marks) > 1:
            steady = sum(k for _, k in marks[1:]) / (marks[-1][0] - marks[0][0])
        results.append(_ingest_row(f"Ray, {n} worker(s)", report.added + report.existing, report.seconds, steady))
    ray.shutdown()
    return results


def _ingest_row(run: str, images: int, seconds: float, steady: float | None) -> dict[str, Any]:
    return {
        "run": run,
        "images": images,
        "seconds": round(seconds, 1),
        "img_per_s": round(images / seconds, 1),
        "steady_img_per_s": round(steady, 1) if steady is not None else "",
    }


def _latencies(search: Any, queries: np.ndarray) -> tuple[float, float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        search(q.reshape(1, -1))
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


CHUNK = 10_000


def vector_chunks(n: int, seed: int = 0) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
    """n random unit vectors with ids 1..n, CHUNK at a time, the same on every call (a million 2280-d vectors
    are 9 GB: each backend gets its own pass, so only the backend under test holds them)."""
    for start in range(0, n, CHUNK):
        rng = np.random.default_rng([seed, start])
        vectors = rng.standard_normal((min(CHUNK, n - start), DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        yield np.arange(start + 1, start + 1 + len(vectors), dtype=np.int64), vectors


def query_vectors(n: int, queries: int) -> NDArray[np.float32]:
    """Stored vectors, slightly moved: each query has one near neighbour."""
    wanted = np.sort(np.random.default_rng(1).choice(n, queries, replace=False)) + 1
    picked = [v[np.isin(ids, wanted)] for ids, v in vector_chunks(n) if np.isin(ids, wanted).any()]
    return np.concatenate(picked) + 0.01


def _added(add: Any, n: int, label: str) -> float:
    """Seconds to add n vectors through `add(ids, vectors)`, with progress every 100k."""
    start = time.perf_counter()
    for ids, vectors in vector_chunks(n):
        add(ids, vectors)
        if ids[-1] % 100_000 == 0 and n >= 200_000:
            took = time.perf_counter() - start
            print(f"  {label}: {ids[-1]} vectors in {took:.0f} s ({ids[-1] / took:.0f}/s)", flush=True)
    return time.perf_counter() - start


def bench_search(
    sizes: Sequence[int], queries: int, work: Path, kinds: Sequence[str], milvus: bool = True
) -> list[dict[str, Any]]:
    from index.config import Settings
    from index.storage.store import ImageStore
    from index.vectors.faiss_index import IndexMeta, VectorIndex
    from index.vectors.milvus import MilvusVectorStore

    results = []
    for n in sizes:
        qs = query_vectors(n, queries)
        for kind in kinds:
            before = psutil.Process().memory_info().rss
            index = VectorIndex(IndexMeta("bench", DIM, kind))
            build = _added(index.add, n, f"faiss {kind}")
            grown = psutil.Process().memory_info().rss - before
            path = work / f"faiss-{kind}-{n}.index"
            index.save(path)
            p50, p95 = _latencies(lambda q, index=index: index.search(q, 10), qs)
            results.append(_row(f"faiss {kind}", n, build, p50, p95, grown, tree_bytes(path)))
            print(json.dumps(results[-1]), flush=True)
            del index
            path.unlink()
        if not milvus:
            continue
        data_dir = work / f"milvus-{n}"
        settings = Settings(data_dir=data_dir, vector_store="milvus", milvus_uri=str(data_dir / "milvus.db"))
        store = ImageStore(data_dir)
        # milvus-lite runs in this process (older releases in a child): count both.
        children_before = _rss_with_children()
        start = time.perf_counter()
        collection = MilvusVectorStore(settings, store, IndexMeta("bench", DIM, "flat"))
        _added(collection.add, n, "milvus-lite")
        collection.save()
        build = time.perf_counter() - start
        p50, p95 = _latencies(lambda q, collection=collection: collection.search(q, 10), qs)
        children = _rss_with_children() - children_before
        results.append(_row("milvus-lite flat", n, build, p50, p95, children, tree_bytes(data_dir / "milvus.db")))
        print(json.dumps(results[-1]), flush=True)
        collection.close()
        store.close()
        shutil.rmtree(data_dir)
    return results


def _rss_with_children() -> int:
    me = psutil.Process()
    return int(me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True)))


def _row(backend: str, n: int, build: float, p50: float, p95: float, mem: int, disk: int) -> dict[str, Any]:
    return {
        "backend": backend,
        "vectors": n,
        "build_s": round(build, 1),
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "memory_mb": round(mem / 2**20),
        "disk_mb": round(disk / 2**20),
        "disk_bytes_per_vector": round(disk / n),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=300, help="ImageNet sample photos for the ingest part")
    p.add_argument("--workers", default="1,2", help="model workers to compare")
    p.add_argument("--sizes", default="20000", help="vector counts for the search part")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--faiss_kinds", default="flat,hnsw", help="FAISS index kinds to compare with Milvus ('' for none)")
    p.add_argument("--no_milvus", action="store_true", help="FAISS only")
    p.add_argument("--only", default="ingest,search")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = p.parse_args(argv)
    results: dict[str, Any] = {"machine": machine()}
    print(json.dumps(results["machine"]))
    with tempfile.TemporaryDirectory(prefix="imgsim-scale-") as tmp:
        work = Path(tmp)
        if "ingest" in args.only:
            if not SAMPLE.is_dir():
                print(f"ingest: skipped, no photos at {SAMPLE}")
            else:
                rows = bench_ingest(args.images, [int(w) for w in args.workers.split(",")], work)
                results["batch_ingest"] = rows
                print_table("Ray batch ingest", list(rows[0]), [list(r.values()) for r in rows])
        if "search" in args.only:
            sizes = [int(s) for s in args.sizes.split(",")]
            kinds = [k for k in args.faiss_kinds.split(",") if k]
            rows = bench_search(sizes, args.queries, work, kinds, milvus=not args.no_milvus)
            results["search"] = rows
            print_table(f"Search, k=10, dim {DIM}", list(rows[0]), [list(r.values()) for r in rows])
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

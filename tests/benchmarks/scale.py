"""Past one machine, measured: Ray batch ingest with 1 and 2 model workers, and search latency, memory and
disk per vector for FAISS (flat, HNSW) and Milvus (milvus-lite, flat); and a real Milvus 2.3 standalone server
(`milvus-server`: insert rate, index build time, search latency and recall@10 against exact search, server
memory and disk, on clustered vectors made from real photo embeddings; see `ClusteredVectors`). Prints
tables, writes JSON. Not a test.

  .venv/bin/python -m tests.benchmarks.scale --images 300 --sizes 20000,100000
  .venv/bin/python -m tests.benchmarks.scale --only search --sizes 1000000 --faiss_kinds hnsw --queries 20
  .venv/bin/python -m tests.benchmarks.scale --only milvus-server --sizes 100000 --milvus_kinds HNSW,IVF_SQ8
  .venv/bin/python -m tests.benchmarks.scale --only milvus-server --sizes 1000000 --milvus_kinds IVF_SQ8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
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
MULTIVIEW = ROOT.parent / "shared" / "datasets" / "multiview"
EMBEDDINGS = Path(tempfile.gettempdir()) / "imgsim-scale-embeddings"  # cached, so reruns skip the model
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


def photo_embeddings(folder: Path) -> NDArray[np.float32]:
    """The default embedder's vectors of every photo in `folder`, in name order, cached in EMBEDDINGS."""
    from index.config import Settings
    from index.model.embedder import Embedder
    from index.model.imaging import decode_for_model

    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
    embedder = Embedder(Settings(data_dir=EMBEDDINGS / "unused"))
    cache = EMBEDDINGS / f"{folder.name}-{len(photos)}-{embedder.version.replace(':', '-')}.npy"
    if cache.exists():
        return np.load(cache)
    embedder.load()
    out = []
    for start in range(0, len(photos), 32):
        crops = [
            decode_for_model(p.read_bytes(), embedder.preprocessing, 10**9).crop for p in photos[start : start + 32]
        ]
        out.append(embedder.forward(np.stack(crops)).embeddings)
    vectors = np.concatenate(out).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


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


class ClusteredVectors:
    """Unit vectors clustered like real embeddings, made CHUNK at a time and the same on every pass.

    The cluster centres are real embeddings (the default model) of the 1,000 ImageNet sample photos and of the
    first view of each of the 125 multiview objects. Each vector is a centre plus noise, normalised: the noise
    is 0.8 parts a Gaussian with the real embeddings' covariance (their top 256 principal directions, so it
    moves along the directions real photos differ in) and 0.6 parts isotropic, scaled per vector by a spread
    drawn from 0.3 to 0.8, which puts a vector at cosine 0.8 to 0.96 from its centre (two views of one real
    object are at 0.8 on average). The queries are real embeddings of held-out photos: the other three views
    of each multiview object, whose first view is a centre.
    """

    def __init__(self, seed: int = 0) -> None:
        multiview = photo_embeddings(MULTIVIEW).reshape(-1, 4, DIM)  # ukbench: 4 photos per object
        self.centres = np.concatenate([photo_embeddings(SAMPLE), multiview[:, 0]])
        self.held_out = multiview[:, 1:].reshape(-1, DIM)
        centred = self.centres - self.centres.mean(axis=0)
        _, singular, directions = np.linalg.svd(centred, full_matrices=False)
        scale = singular[:256] / np.sqrt(len(centred) - 1)
        # rows: principal directions scaled by their standard deviation, for unit expected norm in all
        self.basis = (directions[:256] * (scale / np.sqrt((scale**2).sum()))[:, None]).astype(np.float32)
        self.seed = seed

    def queries(self, n: int) -> NDArray[np.float32]:
        picked = np.linspace(0, len(self.held_out) - 1, min(n, len(self.held_out))).astype(int)
        return np.ascontiguousarray(self.held_out[picked])

    def chunks(self, n: int) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        for start in range(0, n, CHUNK):
            rng = np.random.default_rng([self.seed, start])
            size = min(CHUNK, n - start)
            centre = self.centres[rng.integers(len(self.centres), size=size)]
            along = rng.standard_normal((size, len(self.basis)), dtype=np.float32) @ self.basis
            across = rng.standard_normal((size, DIM), dtype=np.float32) / np.sqrt(DIM)
            spread = rng.uniform(0.3, 0.8, size=(size, 1)).astype(np.float32)
            vectors = centre + spread * (0.8 * along + 0.6 * across)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            yield np.arange(start + 1, start + 1 + size, dtype=np.int64), vectors


class ExactTopK:
    """The exact top k inner products of each query, kept while the vectors stream past."""

    def __init__(self, queries: NDArray[np.float32], k: int = 10) -> None:
        self.queries, self.k = queries, k
        self.scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        self.ids = np.zeros((len(queries), 0), dtype=np.int64)

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        scores = np.concatenate([self.scores, self.queries @ vectors.T], axis=1)
        every = np.concatenate([self.ids, np.broadcast_to(ids, (len(self.queries), len(ids)))], axis=1)
        best = np.argpartition(-scores, self.k - 1, axis=1)[:, : self.k]
        self.scores = np.take_along_axis(scores, best, axis=1)
        self.ids = np.take_along_axis(every, best, axis=1)

    def recall(self, found: list[list[int]]) -> float:
        """Mean share of each query's exact top k that `found` holds."""
        return float(np.mean([len(set(f) & set(t)) / self.k for f, t in zip(found, self.ids.tolist(), strict=True)]))


def server_rss(pid: int | None) -> int:
    """Resident memory of a process and all its descendants."""
    if pid is None:
        return 0
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def milvus_index_specs(
    kinds: Sequence[str], args: argparse.Namespace
) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(index type, build params, the search params to try) for each kind asked for."""
    specs = []
    for kind in kinds:
        kind = kind.upper()
        if kind == "HNSW":
            build = {"M": args.hnsw_m, "efConstruction": args.ef_construction}
            searches = [{"ef": ef} for ef in args.ef]
        elif kind in ("IVF_FLAT", "IVF_SQ8"):
            build = {"nlist": args.nlist}
            searches = [{"nprobe": p} for p in args.nprobe]
        elif kind == "FLAT":
            build, searches = {}, [{}]
        else:
            raise SystemExit(f"unknown Milvus index kind {kind}")
        specs.append((kind, build, searches))
    return specs


INSERT_BATCH = 2_000  # 18 MB a call, under the server's gRPC message limit


def bench_milvus_server(
    sizes: Sequence[int], queries: int, work: Path, specs: list[tuple[str, dict[str, Any], list[dict[str, Any]]]]
) -> list[dict[str, Any]]:
    """A real Milvus 2.3 standalone server (deploy/local_milvus.py) through pymilvus's MilvusClient, no imgsim
    code in between: insert rate, index build time, load, search latency and recall@10 against exact search,
    resident memory of the server's process tree and its data directory's size.

    The vectors are inserted once per size; each index kind is then built on them in turn (drop the last one,
    create, wait until every row is indexed), loaded, and searched one query at a time with each search
    parameter. Build time counts from `create_index` after a flush until every row is indexed (pymilvus's
    `create_index` itself waits for the build; the polling makes sure). The searches wait until the server is
    quiet (its compaction after a build done).
    """
    from pymilvus import DataType, MilvusClient

    sys.path.insert(0, str(ROOT / "deploy"))
    from local_milvus import LocalMilvus

    data = ClusteredVectors()
    qs = data.queries(queries)
    results = []
    for n in sizes:
        data_dir = work / f"milvus-server-{n}"
        with LocalMilvus(data_dir) as server:
            client = MilvusClient(server.uri, timeout=600)
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
            client.create_collection("bench", schema=schema)
            idle_rss = server_rss(server.pid)
            exact = ExactTopK(qs)
            inserting = 0.0
            for ids, vectors in data.chunks(n):
                exact.add(ids, vectors)
                t = time.perf_counter()
                for i in range(0, len(ids), INSERT_BATCH):
                    client.insert(
                        "bench",
                        [
                            {"id": int(j), "vector": v}
                            for j, v in zip(ids[i : i + INSERT_BATCH], vectors[i : i + INSERT_BATCH], strict=True)
                        ],
                    )
                inserting += time.perf_counter() - t
                if ids[-1] % 100_000 == 0:
                    print(
                        f"  milvus-server: {ids[-1]} vectors in {inserting:.0f} s ({ids[-1] / inserting:.0f}/s)",
                        flush=True,
                    )
            t = time.perf_counter()
            client.flush("bench")
            flushing = time.perf_counter() - t
            insert_rss = server_rss(server.pid)
            print(f"  milvus-server: flush {flushing:.0f} s, server RSS {insert_rss / 2**30:.1f} GB", flush=True)
            for kind, build, searches in specs:
                params = client.prepare_index_params()
                params.add_index("vector", index_type=kind, metric_type="IP", params=build, index_name="vector")
                t = time.perf_counter()
                client.create_index("bench", params, timeout=4 * 3600)  # waits for the build
                built = _wait_for_index(client, n, t)
                t = time.perf_counter()
                client.load_collection("bench")
                loading = time.perf_counter() - t
                loaded_rss = server_rss(server.pid)
                # After a build Milvus compacts segments and indexes the merged ones for many minutes, on the cores
                # the searches need: searched then, the latencies measure that work.
                quiet = wait_quiet(server, limit_s=3600.0)
                print(f"  milvus-server: loaded in {loading:.0f} s, quiet after {quiet:.0f} s more", flush=True)
                # data/ only (not the server's own binaries); the WAL (rocksmq) is kept for a while after a flush
                stored = {
                    part: tree_bytes(data_dir / "data" / part) for part in ("insert_log", "index_files", "rocksmq")
                }
                disk = tree_bytes(data_dir / "data")
                for search in searches:
                    row = _search_row(client, qs, exact, search)
                    row.update(
                        backend=f"milvus-server {kind}",
                        vectors=n,
                        build_params=build,
                        insert_per_s=round(n / inserting),
                        flush_s=round(flushing, 1),
                        build_s=round(built, 1),
                        load_s=round(loading, 1),
                        quiet_wait_s=round(quiet, 1),
                        idle_rss_gb=round(idle_rss / 2**30, 2),
                        rss_after_insert_gb=round(insert_rss / 2**30, 2),
                        rss_loaded_gb=round(loaded_rss / 2**30, 2),
                        disk_gb=round(disk / 2**30, 2),
                        disk_parts_gb={part: round(b / 2**30, 2) for part, b in stored.items()},
                        load_avg=round(os.getloadavg()[0], 1),
                    )
                    results.append(row)
                    print(json.dumps(row), flush=True)
                client.release_collection("bench")
                client.drop_index("bench", "vector")
            client.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return results


def wait_quiet(server: Any, below: float = 0.15, window_s: float = 10.0, limit_s: float = 1800.0) -> float:
    """Wait until the server's processes use less than `below` of a core over `window_s` (after a fill it
    compacts and indexes the compacted segments for minutes, on the cores the searches need); returns seconds."""
    assert server.pid is not None
    start = time.perf_counter()
    launcher = psutil.Process(server.pid)
    while time.perf_counter() - start < limit_s:
        tree = [launcher, *launcher.children(recursive=True)]
        before = sum(sum(p.cpu_times()[:2]) for p in tree)  # user + system
        time.sleep(window_s)
        after = sum(sum(p.cpu_times()[:2]) for p in tree if p.is_running())
        if (after - before) / window_s < below:
            break
    return time.perf_counter() - start


def _wait_for_index(client: Any, n: int, started: float) -> float:
    """Seconds from `started` until the index covers all n rows and is Finished (polling describe_index)."""
    last = -1
    while True:
        info = client.describe_index("bench", "vector")
        indexed = int(info.get("indexed_rows", 0))
        if info.get("state") == "Failed":
            raise RuntimeError(f"index build failed: {info}")
        # Not pending_index_rows: after compaction Milvus 2.3.5 can keep reporting most rows pending for long
        # after every row is indexed and the state is Finished (seen at 1M).
        if indexed >= n and info.get("state") == "Finished":
            return time.perf_counter() - started
        if indexed != last:
            print(f"  index: {indexed}/{n} rows after {time.perf_counter() - started:.0f} s", flush=True)
            last = indexed
        time.sleep(2)


def _search_row(client: Any, qs: NDArray[np.float32], exact: ExactTopK, search: dict[str, Any]) -> dict[str, Any]:
    def one(q: NDArray[np.float32]) -> list[int]:
        hits = client.search("bench", data=[q], limit=10, search_params={"metric_type": "IP", "params": search})
        return [int(h["id"]) for h in hits[0]]

    for q in qs[:5]:  # warm up
        one(q)
    times, found = [], []
    for q in qs:
        t = time.perf_counter()
        found.append(one(q))
        times.append(time.perf_counter() - t)
    return {
        "search_params": search,
        "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 1),
        "p95_ms": round(float(np.percentile(times, 95)) * 1e3, 1),
        "recall_at_10": round(exact.recall(found), 3),
        "queries": len(qs),
    }


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


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=300, help="ImageNet sample photos for the ingest part")
    p.add_argument("--workers", default="1,2", help="model workers to compare")
    p.add_argument("--sizes", default="20000", help="vector counts for the search part")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--faiss_kinds", default="flat,hnsw", help="FAISS index kinds to compare with Milvus ('' for none)")
    p.add_argument("--no_milvus", action="store_true", help="FAISS only")
    p.add_argument("--only", default="ingest,search", help="parts to run: ingest, search, milvus-server")
    p.add_argument(
        "--milvus_kinds", default="HNSW,IVF_SQ8", help="milvus-server: index kinds (HNSW, IVF_FLAT, IVF_SQ8, FLAT)"
    )
    p.add_argument("--hnsw_m", type=int, default=None, help="milvus-server HNSW M (default: the hnsw_m setting)")
    p.add_argument(
        "--ef_construction", type=int, default=None, help="milvus-server HNSW efConstruction (default: the service's)"
    )
    p.add_argument("--ef", type=_ints, default=[32, 64, 128], help="milvus-server HNSW search ef values to try")
    p.add_argument("--nlist", type=int, default=1024, help="milvus-server IVF lists")
    p.add_argument("--nprobe", type=_ints, default=[8, 16, 32], help="milvus-server IVF search nprobe values to try")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = p.parse_args(argv)
    if args.hnsw_m is None or args.ef_construction is None:
        from index.config import Settings
        from index.vectors.faiss_index import EF_CONSTRUCTION

        args.hnsw_m = args.hnsw_m or Settings().hnsw_m
        args.ef_construction = args.ef_construction or EF_CONSTRUCTION
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
        if "milvus-server" in args.only:
            sizes = [int(s) for s in args.sizes.split(",")]
            specs = milvus_index_specs(args.milvus_kinds.split(","), args)
            rows = bench_milvus_server(sizes, args.queries, work, specs)
            results["milvus_server"] = rows
            header = [
                "backend",
                "vectors",
                "build_params",
                "insert_per_s",
                "build_s",
                "search_params",
                "p50_ms",
                "p95_ms",
                "recall_at_10",
                "rss_loaded_gb",
                "disk_gb",
            ]
            print_table(f"Milvus server, k=10, dim {DIM}", header, [[r[h] for h in header] for r in rows])
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Searches through the API on a real Milvus server, side by side with SQLite + FAISS on the same vectors.

For each size, one library of N images is stored twice: PostgreSQL + a real Milvus standalone server
(deploy/local_milvus.py, HNSW) and SQLite + FAISS (HNSW too). Each is served by a real
uvicorn process; `GET /search?ref=` (stored images) and `POST /search` (uploaded photos, embedded per request)
are timed from a client on the same machine, and the GET answers are scored against exact search (recall@10).
Every stored image keeps bytes of its own (a small JPEG), as an ingested one does: a search verifies its copy
candidates on them and remembers the verdicts, so each GET is timed twice, first (pairs verified) and again
(verdicts known: a library searched before, or whose duplicates were checked).
The searches start once the Milvus server is quiet (after a fill it compacts and indexes the compacted segments
for minutes, on the cores the searches need). Every query goes to each server in turn, so the ratios hold on a
noisy machine; one Milvus collection is served by one API process per `--ef` (each with a data directory of
its own, as replicas have).

The vectors are clustered like real embeddings: the shared ImageNet sample's 1000 photos are embedded once
(cached under /tmp) and every stored vector is one of them plus Gaussian noise (cosine to its photo about 0.8),
with that photo's predictions as its labels. The uploads are photos of ../shared/datasets/multiview.
Prints tables, writes JSON. Not a test. Needs root (the Milvus server's namespace) and PostgreSQL:

  IMGSIM_TEST_POSTGRES_URL=postgresql+psycopg://imgsim@127.0.0.1:55432/postgres \\
    .venv/bin/python -m tests.benchmarks.milvus_api --sizes 1000,100000 --queries 100
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from deploy.local_milvus import LocalMilvus
from index.config import Settings
from index.model.embedder import Embedder
from index.model.registry import Prediction
from index.pipeline import ImageSource
from index.service import ImageIndex
from index.storage.store import NewImage
from tests.app.server import running_server
from tests.benchmarks.scale import machine, print_table, wait_quiet

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "datasets"
CACHE = Path(tempfile.gettempdir()) / "imgsim-bench-imagenet-embeddings.npz"
NOISE = 0.75  # norm of the noise added to a unit vector: cosine to its photo about 0.8
BATCH = 5000


def photo_embeddings(embedder: Embedder) -> tuple[NDArray[np.float32], list[list[Prediction]]]:
    """The shared ImageNet sample's embeddings and predictions (embedded once, then cached)."""
    if CACHE.exists():
        saved = np.load(CACHE, allow_pickle=True)
        return saved["vectors"], [[Prediction(*p) for p in preds] for preds in saved["predictions"]]
    paths = sorted(p for p in (SHARED / "imagenet-sample").iterdir() if p.suffix.lower() in {".jpeg", ".jpg"})
    vectors, predictions = [], []
    with tempfile.TemporaryDirectory() as scratch, ImageIndex(Settings(data_dir=Path(scratch)), embedder) as index:
        for start in range(0, len(paths), 32):
            for _sha, vector, preds in index.embed([ImageSource.from_path(p) for p in paths[start : start + 32]]):
                vectors.append(vector)
                predictions.append(preds)
    array = np.stack(vectors).astype(np.float32)
    as_tuples = np.array([[(p.label, p.class_index, p.score) for p in preds] for preds in predictions], dtype=object)
    np.savez(CACHE, vectors=array, predictions=as_tuples)
    return array, predictions


class Library:
    """n clustered unit vectors, each one of `photos` plus noise, made `BATCH` at a time and the same each time:
    at 1M they would take 9 GB at once (and three times that while made)."""

    def __init__(self, n: int, photos: NDArray[np.float32], seed: int = 0) -> None:
        self.n, self.photos, self.seed = n, photos, seed
        self.centre = np.random.default_rng(seed).integers(0, len(photos), n)  # the photo each was made from

    def batch(self, lo: int) -> NDArray[np.float32]:
        """The vectors of rows [lo, lo + BATCH), lo a multiple of BATCH."""
        hi = min(lo + BATCH, self.n)
        noise = np.random.default_rng([self.seed, lo]).standard_normal((hi - lo, self.photos.shape[1]), np.float32)
        noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
        vectors = self.photos[self.centre[lo:hi]] + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.astype(np.float32)

    def batches(self) -> Iterator[tuple[int, NDArray[np.float32]]]:
        for lo in range(0, self.n, BATCH):
            yield lo, self.batch(lo)

    def rows(self, rows: Sequence[int]) -> NDArray[np.float32]:
        """The vectors of `rows`, each batch they fall in made once."""
        made = {lo: self.batch(lo) for lo in {r - r % BATCH for r in rows}}
        return np.stack([made[r - r % BATCH][r % BATCH] for r in rows])


def image_bytes(i: int) -> bytes:
    """A small JPEG of its own for stored image i (a blurred 8 x 8 grid of random colours), kept as its bytes."""
    tile = np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(tile).resize((64, 64), Image.Resampling.BILINEAR).save(out, "JPEG", quality=85)
    return out.getvalue()


def fill(settings: Settings, embedder: Embedder, vectors: Library, labels: list[list[Prediction]]) -> float:
    """Store the vectors as images (rows, vectors and kept bytes, as an ingest would: a search verifies its
    candidates on their bytes, and remembers the verdicts); returns seconds."""
    start = time.perf_counter()
    with ImageIndex(settings, embedder) as index:
        for lo, batch in vectors.batches():
            rows = range(lo, lo + len(batch))
            blobs = [(hashlib.sha256(data).hexdigest(), data) for data in map(image_bytes, rows)]
            images = [
                NewImage(
                    sha256=blobs[i - lo][0],
                    byte_size=len(blobs[i - lo][1]),
                    width=64,
                    height=64,
                    format="JPEG",
                    predictions=labels[i],
                    embedding=batch[i - lo],
                    name=f"bench_{i:07d}.jpg",
                )
                for i in rows
            ]
            index.store.write_blobs(blobs)
            inserted = index.store.insert(images, embedder.version, embedder.weights_hash)
            ids = np.array([inserted[img.sha256][0] for img in images], np.int64)
            index.vectors.add(ids, batch)
        index.flush()
    return time.perf_counter() - start


def wait_indexed(uri: str, collection: str) -> float:
    """Flush and wait until the server's index covers every row; returns seconds."""
    from pymilvus import MilvusClient

    start = time.perf_counter()
    client = MilvusClient(uri, timeout=600)
    client.flush(collection)
    while True:
        info = client.describe_index(collection, "vector")
        if info.get("state") == "Failed":
            raise RuntimeError(f"index build failed: {info}")
        # Not pending_index_rows: after compaction Milvus 2.3.5 can report rows pending long after every row is
        # indexed and the state is Finished (as tests.benchmarks.scale found at 1M).
        if info.get("state") == "Finished" and int(info.get("indexed_rows", 0)) >= int(info.get("total_rows", 0)):
            break
        time.sleep(2)
    client.close()
    return time.perf_counter() - start


def timed(call: Any, count: int) -> tuple[list[float], list[Any]]:
    times, answers = [], []
    for n in range(count):
        t = time.perf_counter()
        answers.append(call(n))
        times.append((time.perf_counter() - t) * 1e3)
    return times, answers


def measure(urls: dict[str, str], ref_ids: list[int], uploads: list[bytes], k: int = 10) -> dict[str, dict[str, Any]]:
    """Each query sent to every server in turn (so a noisy moment costs them alike)."""
    clients = {name: httpx.Client(base_url=url, timeout=120) for name, url in urls.items()}
    out: dict[str, dict[str, Any]] = {
        name: {"get_ms": [], "again_ms": [], "post_ms": [], "answers": []} for name in urls
    }

    def by_ref(http: httpx.Client, ref: int) -> list[int]:
        response = http.get("/search", params={"ref": str(ref), "k": k})
        response.raise_for_status()
        return [hit["id"] for hit in response.json()["results"]]

    def by_upload(http: httpx.Client, data: bytes) -> int:
        response = http.post("/search", params={"k": k}, files={"file": ("query.jpg", data)})
        response.raise_for_status()
        return len(response.json()["results"])

    try:
        for http in clients.values():  # warm: connections, caches
            for ref in ref_ids[:5]:
                by_ref(http, ref)
            for data in uploads[:3]:
                by_upload(http, data)
        for ref in ref_ids:
            for name, http in clients.items():
                t = time.perf_counter()
                out[name]["answers"].append(by_ref(http, ref))
                out[name]["get_ms"].append((time.perf_counter() - t) * 1e3)
        for ref in ref_ids:  # again: the candidates' verdicts are known now
            for name, http in clients.items():
                t = time.perf_counter()
                by_ref(http, ref)
                out[name]["again_ms"].append((time.perf_counter() - t) * 1e3)
        for data in uploads:
            for name, http in clients.items():
                t = time.perf_counter()
                by_upload(http, data)
                out[name]["post_ms"].append((time.perf_counter() - t) * 1e3)
    finally:
        for http in clients.values():
            http.close()
    return out


def exact_nearest(refs: list[int], vectors: Library, id_of: NDArray[np.int64]) -> list[set[int]]:
    """The ids of each ref's exact 10 nearest (the query itself left out), in one pass over the library's
    batches."""
    row_of = {int(i): r for r, i in enumerate(id_of)}
    ref_rows = np.array([row_of[ref] for ref in refs])
    queries = vectors.rows(ref_rows.tolist())
    best = np.full((len(refs), 10), -np.inf, np.float32)
    best_rows = np.zeros((len(refs), 10), np.int64)
    for lo, batch in vectors.batches():
        sims = queries @ batch.T
        own = (ref_rows >= lo) & (ref_rows < lo + len(batch))
        sims[own, ref_rows[own] - lo] = -np.inf
        scores = np.concatenate([best, sims], axis=1)
        rows = np.concatenate([best_rows, np.broadcast_to(np.arange(lo, lo + len(batch)), sims.shape)], axis=1)
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        best, best_rows = np.take_along_axis(scores, top, 1), np.take_along_axis(rows, top, 1)
    return [{int(id_of[r]) for r in found} for found in best_rows]


def recall(answers: list[list[int]], exact: list[set[int]]) -> float:
    """Mean overlap of each answer with its exact 10 nearest."""
    return float(np.mean([len(e & set(got)) / 10 for e, got in zip(exact, answers, strict=True)]))


def p(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument(
        "--ef",
        default=f"32,{Settings().hnsw_ef_search}",
        help="IMGSIM_HNSW_EF_SEARCH values for Milvus, comma-separated",
    )
    parser.add_argument("--stores", default="milvus,faiss", help="which of milvus,faiss to fill and serve")
    parser.add_argument("--json", type=Path, default=Path("milvus_api.json"))
    args = parser.parse_args(argv)
    efs = [int(e) for e in args.ef.split(",")]
    postgres = os.environ.get("IMGSIM_TEST_POSTGRES_URL", "")
    if not postgres:
        parser.error("set IMGSIM_TEST_POSTGRES_URL to a PostgreSQL role that may create databases")

    from sqlalchemy import create_engine, make_url

    work = Path(tempfile.mkdtemp(prefix="imgsim-milvus-api-"))
    embedder = Embedder(Settings()).load()
    photos, predictions = photo_embeddings(embedder)
    uploads = [p.read_bytes() for p in sorted((SHARED / "multiview").glob("*.jpg"))[: args.uploads]]
    server = LocalMilvus(work / "milvus").start()
    admin = create_engine(make_url(postgres), isolation_level="AUTOCOMMIT")
    rows: list[dict[str, Any]] = []
    databases: list[str] = []  # not dropped yet: the finally drops them even when a run fails (12 GB at 1M)
    try:
        for n in [int(s) for s in args.sizes.split(",")]:
            vectors = Library(n, photos)
            labels = [predictions[c] for c in vectors.centre]
            refs_rows = np.random.default_rng(1).choice(n, min(args.queries, n), replace=False)
            name = f"imgsim_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            databases.append(name)
            database = make_url(postgres).set(database=name).render_as_string(hide_password=False)
            milvus_env = {
                "IMGSIM_DATABASE_URL": database,
                "IMGSIM_VECTOR_STORE": "milvus",
                "IMGSIM_MILVUS_URI": server.uri,
                "IMGSIM_MILVUS_COLLECTION": name,
            }
            stores = {"milvus": milvus_env, "faiss": {"IMGSIM_INDEX_KIND": "hnsw"}}
            stores = {store: env for store, env in stores.items() if store in args.stores.split(",")}
            filled, indexed, quiet, data_dirs = {}, {}, {}, {}
            for store_name, env in stores.items():
                data_dirs[store_name] = work / f"{name}-{store_name}"
                settings = Settings(
                    data_dir=data_dirs[store_name], **{k.removeprefix("IMGSIM_").lower(): v for k, v in env.items()}
                )
                filled[store_name] = fill(settings, embedder, vectors, labels)
                indexed[store_name] = wait_indexed(server.uri, name) if store_name == "milvus" else 0.0
                quiet[store_name] = wait_quiet(server) if store_name == "milvus" else 0.0
                with ImageIndex(settings, embedder) as index:
                    id_of = index.store.ids()
            refs = [int(id_of[r]) for r in refs_rows]
            # Several API processes may share one collection (as replicas do): one per search breadth.
            targets = {
                f"postgresql + milvus server (hnsw, ef {ef})": ("milvus", ef) for ef in efs if "milvus" in stores
            }
            if "faiss" in stores:
                targets[f"sqlite + faiss (hnsw, ef {efs[-1]})"] = ("faiss", efs[-1])
            with contextlib.ExitStack() as running:
                urls = {}
                for target, (store_name, ef) in targets.items():
                    env = {**stores[store_name], "IMGSIM_HNSW_EF_SEARCH": str(ef), "IMGSIM_REQUEST_TIMEOUT_S": "0"}
                    data_dir = data_dirs[store_name]
                    if store_name == "milvus" and ef != efs[0]:  # another replica: its own data directory
                        data_dir = work / f"{name}-milvus-ef{ef}"
                    log = work / f"{store_name}-{ef}-{n}.log"
                    urls[target] = running.enter_context(running_server(data_dir, log, **env))
                got = measure(urls, refs, uploads)
            exact = exact_nearest(refs, vectors, id_of)  # once for every target
            for target, (store_name, ef) in targets.items():
                row = {
                    "target": target,
                    "vectors": n,
                    "fill_s": round(filled[store_name], 1),
                    "index_wait_s": round(indexed[store_name], 1),
                    "quiet_wait_s": round(quiet[store_name], 1),
                    "get_p50_ms": p(got[target]["get_ms"], 50),
                    "get_p95_ms": p(got[target]["get_ms"], 95),
                    "again_p50_ms": p(got[target]["again_ms"], 50),
                    "again_p95_ms": p(got[target]["again_ms"], 95),
                    "post_p50_ms": p(got[target]["post_ms"], 50),
                    "post_p95_ms": p(got[target]["post_ms"], 95),
                    "recall_at_10": round(recall(got[target]["answers"], exact), 3),
                    "ef_search": ef,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            for folder in data_dirs.values():
                shutil.rmtree(folder, ignore_errors=True)
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            databases.remove(name)  # its disk back before the next size
    finally:
        server.close()
        with admin.connect() as conn:
            for name in databases:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)
    header = ["target", "vectors", "fill_s", "index_wait_s", "quiet_wait_s", "get_p50_ms", "get_p95_ms"]
    header += ["again_p50_ms", "again_p95_ms", "post_p50_ms"]
    header += ["post_p95_ms", "recall_at_10"]
    print_table(
        "Search through the API (real uvicorn; ms from a client on this machine)",
        header,
        [[r[h] for h in header] for r in rows],
    )
    for n in sorted({r["vectors"] for r in rows}):
        at = [r for r in rows if r["vectors"] == n]
        faiss = next((r for r in at if r["target"].startswith("sqlite")), None)
        for r in at if faiss is not None else ():
            if r is not faiss:
                print(
                    f"  {n}: {r['target']} / faiss p50: GET {r['get_p50_ms'] / faiss['get_p50_ms']:.2f}, "
                    f"POST {r['post_p50_ms'] / faiss['post_p50_ms']:.2f}"
                )
    args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

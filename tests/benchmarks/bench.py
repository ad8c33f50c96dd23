"""The imgsim benchmark: prints tables and writes JSON (to bench-results/ by default). Not a test.

    python -m tests.benchmarks.bench                       # everything but the 1M search and the quality check
    python -m tests.benchmarks.bench --sizes 10000,100000,1000000 --quality
    python -m tests.benchmarks.bench --only search --sizes 1000000

Parts: cli (whole-process CLI ingest + rank vs the naive loop, cold and cached), embed (in-process throughput
vs the measured fp32 matmul peak), http (POST /ingest at concurrency 1 and 4, GET /search, vs in-process;
needs app/main.py), search (exact vs approximate vector index on synthetic unit vectors), quality (bf16 vs
fp32 on the photos). Timings are only comparable within one run: compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IMAGES = ROOT.parent / "shared" / "datasets" / "imagenet-sample"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
# The default embedding's width (GeM features 1280 + logits 1000).
DIM = 2280
PARTS = ("cli", "embed", "http", "search", "quality")

Row = dict[str, Any]


# --- helpers ------------------------------------------------------------------------------------------------


def percentile_ms(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000.0, q))


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n## {title}")
    if not rows:
        print("(nothing measured)")
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return "" if v is None else str(v)

    cells = [[cell(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def image_folder(source: Path, count: int, work: Path) -> Path:
    """`count` images of `source` (symlinked), or generated photos-like JPEGs when `source` is absent."""
    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if source.is_dir() else []
    if files:
        for f in files[:count]:
            (folder / f.name).symlink_to(f.resolve())
        return folder
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((500, 375), Image.Resampling.BICUBIC)
        img.save(folder / f"generated_{i:05d}.jpg", quality=90)
    return folder


def reference_name(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir())
    return next((n for n in names if "tabby" in n), names[0])


def run_process(cmd: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def settings_for(data_dir: Path, **overrides: Any) -> Any:
    from index.config import Settings

    return Settings(data_dir=data_dir, **overrides)


# --- 1 and 5: whole-process CLI vs the naive loop, cold and cached ------------------------------------------


def bench_cli(folder: Path, work: Path) -> list[Row]:
    ref = reference_name(folder)
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    n = len(list(folder.iterdir()))
    naive_db = work / "naive.db"
    naive = run_process(
        [
            py,
            "-m",
            "tests.benchmarks.naive_ingest",
            "--images_folder",
            str(folder),
            "--ref_image",
            ref,
            "--db",
            str(naive_db),
        ],
        env,
    )
    cli = [py, str(ROOT / "similarity_analysis.py"), "--images_folder", str(folder), "--ref_image", ref, "--quiet"]
    cold = run_process([*cli, "--data_dir", str(work / "cli")], env)
    cached = run_process([*cli, "--data_dir", str(work / "cli")], env)
    return [
        {"run": "naive loop (batch 1, fp32, commit per image)", "images": n, "seconds": naive, "img/s": n / naive},
        {
            "run": "CLI cold (fresh data dir)",
            "images": n,
            "seconds": cold,
            "img/s": n / cold,
            "vs naive": naive / cold,
        },
        {
            "run": "CLI cached re-run",
            "images": n,
            "seconds": cached,
            "img/s": n / cached,
            "vs cold": cached / cold,
        },
    ]


# --- 2: embedding throughput vs the fp32 compute bound -----------------------------------------------------


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    import torch

    a = torch.randn(size, size)
    b = torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def model_gflop_per_image(embedder: Any) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = embedder.preprocessing.input_size
    model = embedder.load().engine.model  # the torch engine's network
    x = torch.zeros(1, 3, size, size, dtype=embedder.dtype)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


def load_crops(folder: Path, embedder: Any, count: int) -> NDArray[np.uint8]:
    from index.model.imaging import decode_for_model

    files = sorted(folder.iterdir())[:count]
    return np.stack([decode_for_model(f.read_bytes(), embedder.preprocessing, 10**9).crop for f in files])


def bench_embed(folder: Path, work: Path, batch_size: int, rounds: int = 3) -> list[Row]:
    from index.model.embedder import Embedder
    from index.model.imaging import decode_for_model

    embedders = {
        p: Embedder(settings_for(work / "embed", precision=p, engine="torch")).load() for p in ("fp32", "auto")
    }
    auto = embedders["auto"]
    crops = load_crops(folder, auto, batch_size * 2)
    files = sorted(folder.iterdir())[: batch_size * 2]
    datas = [f.read_bytes() for f in files]
    for e in embedders.values():
        e.forward(crops[:batch_size])
    gflop = model_gflop_per_image(embedders["fp32"])
    peak = matmul_gflops()
    bound = peak / gflop
    best: dict[str, float] = dict.fromkeys(embedders, 0.0)
    decode_best = 0.0
    for _ in range(rounds):  # interleaved, so background load hits every variant alike
        for name, e in embedders.items():
            t = time.perf_counter()
            for i in range(0, len(crops), batch_size):
                e.forward(crops[i : i + batch_size])
            best[name] = max(best[name], len(crops) / (time.perf_counter() - t))
        t = time.perf_counter()
        for d in datas:
            decode_for_model(d, auto.preprocessing, 10**9)
        decode_best = max(decode_best, len(datas) / (time.perf_counter() - t))
    rows: list[Row] = [
        {"what": "fp32 matmul 2048x2048", "GFLOP/s": peak},
        {"what": "model cost", "GFLOP/image": gflop, "fp32 bound img/s": bound},
    ]
    for name, e in embedders.items():
        dtype = str(e.dtype).removeprefix("torch.")
        rows.append(
            {
                "what": f"embed {name} ({dtype}), batch {batch_size}",
                "img/s": best[name],
                "fraction of fp32 bound": best[name] / bound,
            }
        )
    rows.append({"what": "decode + crop, 1 thread", "img/s": decode_best})
    return rows


# --- 3: HTTP ingest and search vs in-process --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real uvicorn process serving app.main:app on a free loopback port."""

    def __init__(self, data_dir: Path, **settings: str) -> None:
        """`settings`: extra environment for the server, e.g. IMGSIM_ENGINE="openvino"."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "IMGSIM_DATA_DIR": str(data_dir), **settings}
        cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self) -> Server:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"uvicorn exited: {self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ''}"
                )
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("uvicorn did not become ready in 120 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def search_latencies(url: str, ref: str, searches: int) -> list[float]:
    """Seconds of each of `searches` sequential `GET /search?ref=&k=10`, after one untimed warm-up."""
    import httpx

    latencies = []
    with httpx.Client(base_url=url, timeout=60) as client:
        client.get("/search", params={"ref": ref, "k": 10}).raise_for_status()
        for _ in range(searches):
            t = time.perf_counter()
            client.get("/search", params={"ref": ref, "k": 10}).raise_for_status()
            latencies.append(time.perf_counter() - t)
    return latencies


def post_ingest(url: str, chunks: list[list[Path]], concurrency: int) -> float:
    import httpx

    def send(chunk: list[Path]) -> None:
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in chunk]
        with httpx.Client(timeout=600) as client:
            r = client.post(f"{url}/ingest", files=files)
        r.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(send, chunks))
    return time.perf_counter() - started


def bench_http(folder: Path, work: Path, per_request: int, searches: int) -> list[Row]:

    from index.pipeline import ImageSource
    from index.service import ImageIndex

    files = sorted(folder.iterdir())
    chunks = [files[i : i + per_request] for i in range(0, len(files), per_request)]
    with ImageIndex(settings_for(work / "inproc")) as index:
        index.embedder.load()
        started = time.perf_counter()
        index.ingest([ImageSource.from_path(f) for f in files])
        inproc = time.perf_counter() - started
        ref = str(index.resolve_ref(reference_name(folder)).id)
        inproc_search = []
        for _ in range(searches):
            t = time.perf_counter()
            index.search_by_ref(ref, 10)
            inproc_search.append(time.perf_counter() - t)
    n = len(files)
    rows: list[Row] = [{"run": "in-process ingest", "images": n, "seconds": inproc, "img/s": n / inproc}]
    http_search: list[float] = []
    for concurrency in (1, 4):
        data_dir = work / f"http{concurrency}"
        with Server(data_dir) as server:
            seconds = post_ingest(server.url, chunks, concurrency)
            rows.append(
                {
                    "run": f"POST /ingest, concurrency {concurrency}, {per_request}/request",
                    "images": n,
                    "seconds": seconds,
                    "img/s": n / seconds,
                    "vs in-process": inproc / seconds,
                }
            )
            if concurrency == 1:
                http_search = search_latencies(server.url, ref, searches)
    p50_in, p50_http = percentile_ms(inproc_search, 50), percentile_ms(http_search, 50)
    rows.append(
        {"run": f"search_by_ref in-process ({n} images)", "p50 ms": p50_in, "p99 ms": percentile_ms(inproc_search, 99)}
    )
    rows.append(
        {
            "run": f"GET /search ({n} images)",
            "p50 ms": p50_http,
            "p99 ms": percentile_ms(http_search, 99),
            "HTTP overhead p50 ms": p50_http - p50_in,
        }
    )
    return rows


# --- 4: vector search at scale -----------------------------------------------------------------------------


def synthetic_vectors(
    n: int, seed: int, centres: NDArray[np.float32], basis: NDArray[np.float32]
) -> NDArray[np.float32]:
    """Unit vectors shaped like image embeddings: class clusters in a low-dimensional subspace, plus noise.

    Uniform random unit vectors in 1280 dimensions are all nearly equidistant, which no real collection is
    and which makes every approximate index look broken; these have the low intrinsic dimension of CNN
    features.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n, basis.shape[1]), np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        labels = rng.integers(0, len(centres), m)
        latent = centres[labels] + rng.standard_normal((m, basis.shape[0]), dtype=np.float32)
        x = latent @ basis + 0.6 * rng.standard_normal((m, basis.shape[1]), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def time_queries(index: Any, queries: NDArray[np.float32]) -> list[float]:
    """Seconds per single-query top-10 search."""
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None, :], 10)
        times.append(time.perf_counter() - t)
    return times


def bench_search(
    sizes: list[int],
    queries: int,
    hnsw_m: int,
    ef_search: int,
    ef_construction: int,
    dim: int = DIM,
    latent_dim: int = 128,
) -> list[Row]:
    from index.vectors.faiss_index import IndexMeta, VectorIndex

    rng = np.random.default_rng(1)
    centres = (rng.standard_normal((1000, latent_dim)) * 1.5).astype(np.float32)
    basis = rng.standard_normal((latent_dim, dim)).astype(np.float32) / np.sqrt(latent_dim)
    rows: list[Row] = []
    for n in sizes:
        data = synthetic_vectors(n, seed=2, centres=centres, basis=basis)
        q = synthetic_vectors(queries, seed=3, centres=centres, basis=basis)
        ids = np.arange(1, n + 1, dtype=np.int64)
        truth: NDArray[np.int64] | None = None
        for kind in ("flat", "hnsw"):
            before = rss_mb()
            index = VectorIndex(IndexMeta("bench", dim, kind), hnsw_m, ef_search, ef_construction)
            started = time.perf_counter()
            for s in range(0, n, 100_000):
                index.add(ids[s : s + 100_000], data[s : s + 100_000])
            build = time.perf_counter() - started
            memory = rss_mb() - before
            # exact search is slow at 1M: fewer timed queries there (recall uses the batched ground truth)
            timed = q[: min(queries, 50 if kind == "flat" and n >= 500_000 else queries)]
            times = time_queries(index, timed)
            _, found = index.search(q, 10)
            if truth is None:
                truth = found
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))
            rows.append(
                {
                    "vectors": n,
                    "index": kind if kind == "flat" else f"hnsw M={hnsw_m} ef={ef_search}",
                    "build s": build,
                    "RSS MB": memory,
                    "p50 ms": percentile_ms(times, 50),
                    "p99 ms": percentile_ms(times, 99),
                    "recall@10": recall,
                }
            )
            print(rows[-1], flush=True)
            del index
        del data
    return rows


# --- quality: bf16 vs fp32 on the photos ------------------------------------------------------------------


def bench_quality(folder: Path, work: Path, batch_size: int) -> list[Row]:
    from index.model.embedder import Embedder
    from index.model.imaging import decode_for_model

    files = sorted(folder.iterdir())
    results: dict[str, tuple[NDArray[np.float32], NDArray[np.int64]]] = {}
    for precision in ("fp32", "bf16"):
        e = Embedder(settings_for(work / "quality", precision=precision, engine="torch")).load()
        vectors: list[NDArray[np.float32]] = []
        top1: list[int] = []
        for i in range(0, len(files), batch_size):
            crops = np.stack(
                [decode_for_model(f.read_bytes(), e.preprocessing, 10**9).crop for f in files[i : i + batch_size]]
            )
            out = e.forward(crops)
            vectors.append(out.embeddings)
            top1.extend(p[0].class_index for p in out.predictions)
        results[precision] = (np.concatenate(vectors), np.asarray(top1))
    (v32, t32), (v16, t16) = results["fp32"], results["bf16"]

    def neighbours(v: NDArray[np.float32]) -> NDArray[np.int64]:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :10]

    n32, n16 = neighbours(v32), neighbours(v16)
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(n32, n16, strict=True)]))
    truth = [_class_index(f.name) for f in files]
    acc = {
        k: float(np.mean([t == p for t, p in zip(truth, r[1], strict=True) if t is not None]))
        for k, r in results.items()
    }
    cos = float(np.min(np.sum(v32 * v16, axis=1)))
    return [
        {
            "images": len(files),
            "top-1 agreement bf16/fp32": float(np.mean(t32 == t16)),
            "neighbour overlap@10": overlap,
            "min cosine(fp32, bf16)": cos,
            "top-1 acc fp32": acc["fp32"],
            "top-1 acc bf16": acc["bf16"],
        }
    ]


_WNIDS: list[str] = []


def _class_index(name: str) -> int | None:
    """The ImageNet class of a shared photo, from the wordnet id its name starts with (sorted ids = index)."""
    if not _WNIDS:
        _WNIDS.extend(sorted({p.name.split("_")[0] for p in DEFAULT_IMAGES.glob("n*_*")}))
    wnid = name.split("_")[0]
    if len(_WNIDS) != 1000 or wnid not in _WNIDS:
        return None
    return _WNIDS.index(wnid)


# --- main ---------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_avg_at_start": os.getloadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images_folder", type=Path, default=DEFAULT_IMAGES, help="photos (generated when absent)")
    p.add_argument("--images", type=int, default=1000, help="how many photos to use (default 1000)")
    p.add_argument("--sizes", default="10000,100000", help="vector counts for the search part (add 1000000)")
    p.add_argument("--queries", type=int, default=300, help="timed queries per index")
    p.add_argument("--only", default=",".join(p for p in PARTS if p != "quality"), help=f"parts: {','.join(PARTS)}")
    p.add_argument("--quality", action="store_true", help="also run the bf16-vs-fp32 quality check")
    p.add_argument("--skip-http", action="store_true", help="leave out the HTTP part")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--per_request", type=int, default=16, help="images per POST /ingest")
    p.add_argument("--hnsw_m", type=int, default=32)
    p.add_argument("--ef_search", type=int, default=128)
    p.add_argument("--ef_construction", type=int, default=80)
    p.add_argument("--dim", type=int, default=DIM, help=f"vector width for the search part (default {DIM})")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results", help="folder for the JSON result")
    args = p.parse_args(argv)

    parts = {x.strip() for x in args.only.split(",") if x.strip()}
    if args.quality:
        parts.add("quality")
    if args.skip_http:
        parts.discard("http")
    unknown = parts - set(PARTS)
    if unknown:
        print(f"error: unknown part(s) {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    work = Path(tempfile.mkdtemp(prefix="imgsim-bench-"))
    try:
        folder = image_folder(args.images_folder, args.images, work)
        steps: list[tuple[str, str, Callable[[], list[Row]]]] = [
            (
                "cli",
                "1+5. Whole-process CLI ingest + rank vs the naive loop; cached re-run",
                lambda: bench_cli(folder, work),
            ),
            (
                "embed",
                "2. In-process embedding vs the fp32 compute bound",
                lambda: bench_embed(folder, work, args.batch_size),
            ),
            ("quality", "bf16 vs fp32 quality", lambda: bench_quality(folder, work, args.batch_size)),
            ("http", "3. HTTP vs in-process", lambda: bench_http(folder, work, args.per_request, args.queries)),
            (
                "search",
                f"4. Vector search on synthetic {args.dim}-d unit vectors (in-process, one query at a time, k=10)",
                lambda: bench_search(
                    [int(s) for s in args.sizes.split(",") if s],
                    args.queries,
                    args.hnsw_m,
                    args.ef_search,
                    args.ef_construction,
                    args.dim,
                ),
            ),
        ]
        for key, title, step in steps:
            if key not in parts:
                continue
            if key == "http" and not (ROOT / "app" / "main.py").exists():
                print(f"\n## {title}\nskipped: app/main.py does not exist")
                continue
            print(f"\n... {title}", flush=True)
            rows = step()
            results[key] = rows
            print_table(title, rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

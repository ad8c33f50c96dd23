"""Inference engines side by side: prints tables (with the CPU's flags) and writes JSON to bench-results/.

    python -m tests.benchmarks.engines                      # every part, on the 1000 shared photos
    python -m tests.benchmarks.engines --only forward,startup --images 200

Parts (all measured in this one run, interleaved where they compare; read the ratios):
- forward: img/s at batch 32 for every installed engine and precision, against torch fp32 and the fp32
  matmul bound (what the CPU's fp32 matrix multiply could do for this model's FLOPs);
- agreement: per-image cosine and top-1 agreement of every variant with torch fp32 on all the photos;
- quality: near-duplicate recall@1 and super-class precision@10 (tests/benchmarks/evaluate.py) per variant,
  the int8 gate;
- startup: whole process, start to the first forward pass, per engine, with the export cached;
- cli: whole-process CLI (ingest + rank) against the naive loop, cold (fresh data dir, export cached) per
  engine, the cached re-run, and the one-off export on an empty cache;
- overlap: in-process ingest with decoding overlapping the forward pass or taking turns with it;
- api: POST /ingest throughput and GET /search latency through a real uvicorn, torch engine vs auto.

Emulating an AVX2-only CPU on a newer one: --max-isa avx2 sets ONEDNN_MAX_CPU_ISA=AVX2 (and
MKL_ENABLE_INSTRUCTIONS=AVX2, for the matmul bound) for the whole run.
torch's oneDNN and OpenVINO's convolutions honour it (OpenVINO keeps a few AVX-512 element-wise kernels);
ONNX Runtime picks its kernels from the CPU's flags and is not restricted. bf16 counts as not native.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tests.benchmarks.bench import (
    DEFAULT_IMAGES,
    ROOT,
    Row,
    Server,
    image_folder,
    matmul_gflops,
    percentile_ms,
    post_ingest,
    print_table,
    reference_name,
    run_process,
    search_latencies,
)

PARTS = ("forward", "startup", "agreement", "quality", "cli", "overlap", "api")
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    from index.model.engines import installed_engines
    from index.model.engines.base import cpu_flags, cpu_model_name

    flags = cpu_flags()
    return {
        "cpu": cpu_model_name(),
        "cores": os.cpu_count(),
        "flags": {f: f in flags for f in FLAGS},
        "emulated_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "engines": {name: version(name) for name in installed_engines()},
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
    }


def print_machine(m: dict[str, Any]) -> None:
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["flags"].items())
    print(f"CPU: {m['cpu']}, {m['cores']} cores; {flags}")
    if m["emulated_max_isa"]:
        print(
            f"ONEDNN_MAX_CPU_ISA={m['emulated_max_isa']}: an emulation (torch and OpenVINO's convolutions follow "
            "it; ONNX Runtime does not)"
        )
    print("engines: " + ", ".join(f"{k} {v}" for k, v in m["engines"].items()))
    print(f"load average at start: {m['load_avg_at_start']}")


def variants() -> list[tuple[str, str]]:
    """(engine, precision) pairs worth comparing here: bf16 only where the CPU runs it natively."""
    from index.model.engines import installed_engines
    from index.model.engines.base import cpu_has_native_bf16

    # Under the AVX2 emulation bf16 is not native, whatever the CPU's flags say.
    native = cpu_has_native_bf16() and os.environ.get("ONEDNN_MAX_CPU_ISA") is None
    wanted = {
        "torch": ["fp32", *(["bf16"] if native else [])],
        "onnxruntime": ["fp32", "int8"],
        "openvino": ["fp32", *(["bf16"] if native else []), "int8"],
    }
    found = [(e, p) for e in installed_engines() for p in wanted[e]]
    chosen = os.environ.get("IMGSIM_BENCH_VARIANTS")  # set from --variants
    if chosen:
        names = {v.strip() for v in chosen.split(",")}
        found = [(e, p) for e, p in found if f"{e} {p}" in names]
    return found


def embedder_for(engine: str, precision: str, work: Path) -> Any:
    from index.config import Settings
    from index.model.embedder import Embedder

    return Embedder(Settings(data_dir=work / "unused", engine=engine, precision=precision)).load()


def decode_all(files: Sequence[Path], embedder: Any) -> NDArray[np.uint8]:
    from index.model.imaging import decode_for_model

    return np.stack([np.asarray(decode_for_model(f.read_bytes(), embedder.preprocessing, 10**9).crop) for f in files])


def model_gflop_per_image(work: Path) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    e = embedder_for("torch", "fp32", work)
    size = e.preprocessing.input_size
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        e.engine.model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def name_of(engine: str, precision: str) -> str:
    return f"{engine} {precision}"


# --- forward pass -------------------------------------------------------------------------------------------


def bench_forward(files: list[Path], work: Path, batch: int, rounds: int) -> list[Row]:
    embedders = {name_of(e, p): embedder_for(e, p, work) for e, p in variants()}
    crops = decode_all(files[: batch * 2], next(iter(embedders.values())))
    for e in embedders.values():
        e.forward(crops[:batch])  # warm-up: kernels built for this batch shape
    gflop, peak = model_gflop_per_image(work), matmul_gflops()
    bound = peak / gflop
    best = dict.fromkeys(embedders, 0.0)
    for _ in range(rounds):  # interleaved: background load hits every variant alike
        for name, e in embedders.items():
            t = time.perf_counter()
            for i in range(0, len(crops), batch):
                e.forward(crops[i : i + batch])
            best[name] = max(best[name], len(crops) / (time.perf_counter() - t))
    base = best.get("torch fp32") or next(iter(best.values()))
    rows: list[Row] = [
        {"variant": "fp32 matmul 2048x2048 (torch)", "GFLOP/s": peak},
        {"variant": "model cost", "GFLOP/image": gflop, "fp32 bound img/s": bound},
    ]
    rows += [
        {
            "variant": f"{name} ({e.dtype if isinstance(e.dtype, str) else str(e.dtype).removeprefix('torch.')})",
            f"img/s, batch {batch}": best[name],
            "vs torch fp32": best[name] / base,
            "fraction of fp32 bound": best[name] / bound,
        }
        for name, e in embedders.items()
    ]
    return rows


# --- agreement and quality ----------------------------------------------------------------------------------


def bench_agreement(files: list[Path], work: Path, batch: int) -> list[Row]:
    results: dict[str, tuple[NDArray[np.float32], NDArray[np.int64]]] = {}
    for engine, precision in variants():
        e = embedder_for(engine, precision, work)
        vectors, classes = [], []
        for i in range(0, len(files), batch):
            r = e.forward(decode_all(files[i : i + batch], e))
            vectors.append(r.embeddings)
            classes += [p[0].class_index for p in r.predictions]
        results[name_of(engine, precision)] = (np.concatenate(vectors), np.asarray(classes))
    ref_v, ref_top1 = results.get("torch fp32") or next(iter(results.values()))
    truth = [_class_index(f.name) for f in files]
    rows: list[Row] = []
    for name, (v, top1) in results.items():
        cos = np.sum(v * ref_v, axis=1)
        known = [(t, p) for t, p in zip(truth, top1, strict=True) if t is not None]
        rows.append(
            {
                "variant": name,
                "photos": len(files),
                "cosine min": float(cos.min()),
                "cosine mean": float(cos.mean()),
                "top-1 agreement": float(np.mean(top1 == ref_top1)),
                "top-1 accuracy": float(np.mean([t == p for t, p in known])) if known else None,
            }
        )
    return rows


def _class_index(name: str) -> int | None:
    from tests.benchmarks.bench import _class_index as class_index

    return class_index(name)


def bench_quality(folder: Path, work: Path, limit: int) -> list[Row]:
    from tests.benchmarks import evaluate

    data = evaluate.build_dataset(folder, limit)
    rows: list[Row] = []
    for engine, precision in variants():
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            r = evaluate.evaluate_definition(
                data, "efficientnet_lite0", "default", Path(tmp), engine=engine, precision=precision
            )
        rows.append(
            {
                "variant": name_of(engine, precision),
                "top-1": r["top1"],
                "near-dup recall@1": r["near_duplicate_recall1"],
                "near-dup mAP": r["near_duplicate_map"],
                "super-class precision@10": r["superclass_precision10"],
                "ingest img/s": r["images_per_second"],
            }
        )
    return rows


# --- whole processes ----------------------------------------------------------------------------------------


FIRST_FORWARD = """
import time, numpy as np
from index.config import Settings
from index.model.embedder import Embedder
e = Embedder(Settings())
size = e.preprocessing.input_size
e.forward(np.zeros((1, size, size, 3), np.uint8))
import sys
print("torch" in sys.modules)
"""


def bench_startup(work: Path, rounds: int) -> list[Row]:
    from index.model.engines import installed_engines

    engines = installed_engines()
    for engine in engines:  # the export is cached before anything is timed
        embedder_for(engine, "auto", work)
    best: dict[str, float] = dict.fromkeys(engines, float("inf"))
    imported_torch: dict[str, bool] = {}
    for _ in range(rounds):
        for engine in engines:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "IMGSIM_ENGINE": engine}
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", FIRST_FORWARD], cwd=ROOT, env=env, capture_output=True, text=True, check=True
            )
            best[engine] = min(best[engine], time.perf_counter() - t)
            imported_torch[engine] = proc.stdout.strip().endswith("True")
    return [
        {"engine": e, "process start to first forward, s": best[e], "imports torch": imported_torch[e]} for e in engines
    ]


def bench_cli(folder: Path, work: Path) -> list[Row]:
    from index.model.engines import installed_engines

    ref = reference_name(folder)
    n = len(list(folder.iterdir()))
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [py, str(ROOT / "similarity_analysis.py"), "--images_folder", str(folder), "--ref_image", ref, "--quiet"]
    engines = installed_engines()
    for engine in engines:
        embedder_for(engine, "auto", work)  # export cached, as after the first run
    naive = [py, "-m", "tests.benchmarks.naive_ingest", "--images_folder", str(folder), "--ref_image", ref]
    seconds: dict[str, float] = {}
    # Interleaved: naive, then each engine cold, then the cached re-run.
    seconds["naive"] = run_process([*naive, "--db", str(work / "naive.db")], env)
    for engine in ["auto", *engines]:
        seconds[engine] = run_process(
            [*cli, "--data_dir", str(work / f"cli-{engine}")], {**env, "IMGSIM_ENGINE": engine}
        )
    # The cached re-run is short, so one scheduling hiccup shows: the median of five.
    reruns = sorted(run_process([*cli, "--data_dir", str(work / "cli-auto")], env) for _ in range(5))
    seconds["cached"] = reruns[len(reruns) // 2]
    # The one-off export on an empty model cache (first run of the quick start), with 10 photos.
    small = work / "small"
    small.mkdir()
    for f in sorted(folder.iterdir())[:10]:
        (small / f.name).symlink_to(f.resolve())
    first = [py, str(ROOT / "similarity_analysis.py"), "--images_folder", str(small), "--ref_image"]
    first += [sorted(p.name for p in small.iterdir())[0], "--quiet", "--data_dir", str(work / "first")]
    seconds["first"] = run_process(first, {**env, "IMGSIM_MODEL_CACHE_DIR": str(work / "empty-cache")})
    seconds["first-cached"] = run_process(
        [*first[:-1], str(work / "first2")], {**env, "IMGSIM_MODEL_CACHE_DIR": str(work / "empty-cache")}
    )
    naive_s, cold = seconds["naive"], seconds["auto"]
    rows: list[Row] = [{"run": "naive loop (torch, batch 1, fp32, commit per image)", "images": n, "seconds": naive_s}]
    for engine in ["auto", *engines]:
        s = seconds[engine]
        rows.append({"run": f"CLI cold, engine {engine}", "images": n, "seconds": s, "vs naive": naive_s / s})
    rows.append(
        {
            "run": "CLI cached re-run (auto, median of 5)",
            "images": n,
            "seconds": seconds["cached"],
            "vs cold": seconds["cached"] / cold,
        }
    )
    rows.append({"run": "first run, empty model cache (export), 10 photos", "images": 10, "seconds": seconds["first"]})
    rows.append({"run": "same, export cached", "images": 10, "seconds": seconds["first-cached"]})
    return rows


def bench_overlap(files: list[Path], work: Path, rounds: int) -> list[Row]:
    import index.pipeline as pipeline
    from index.config import Settings
    from index.pipeline import ImageSource
    from index.service import ImageIndex

    chosen = files[:320]
    original = pipeline.should_overlap
    best: dict[str, float] = {}
    try:
        for r in range(rounds):
            for mode in ("default", "overlap", "take turns"):
                pipeline.should_overlap = {
                    "default": original,
                    "overlap": lambda _e: True,
                    "take turns": lambda _e: False,
                }[mode]
                with ImageIndex(Settings(data_dir=work / f"overlap-{mode}-{r}")) as index:
                    index.embedder.load()
                    t = time.perf_counter()
                    index.ingest([ImageSource.from_path(f) for f in chosen])
                    rate = len(chosen) / (time.perf_counter() - t)
                    engine = index.embedder.engine.name
                best[f"{mode} ({engine})"] = max(best.get(f"{mode} ({engine})", 0.0), rate)
    finally:
        pipeline.should_overlap = original
    return [{"ingest, in-process": k, "images": len(chosen), "img/s": v} for k, v in best.items()]


def bench_api(files: list[Path], work: Path, per_request: int, searches: int) -> list[Row]:
    import httpx

    chosen = files[:320]
    chunks = [chosen[i : i + per_request] for i in range(0, len(chosen), per_request)]
    ref = chosen[0].name
    rows: list[Row] = []
    for engine in ("torch", "auto"):
        with Server(work / f"api-{engine}", IMGSIM_ENGINE=engine) as server:
            seconds = post_ingest(server.url, chunks, 4)
            latencies = search_latencies(server.url, ref, searches)
            with httpx.Client(base_url=server.url, timeout=60) as client:
                with chosen[1].open("rb") as fh:
                    files_ = {"file": (chosen[1].name, fh.read(), "image/jpeg")}
                upload = []
                for _ in range(max(5, searches // 10)):
                    t = time.perf_counter()
                    client.post("/search", files=files_, params={"k": 10}).raise_for_status()
                    upload.append(time.perf_counter() - t)
        rows.append(
            {
                "engine": engine,
                f"POST /ingest img/s (4 clients, {per_request}/request)": len(chosen) / seconds,
                "GET /search p50 ms": percentile_ms(latencies, 50),
                "GET /search p99 ms": percentile_ms(latencies, 99),
                "POST /search (upload) p50 ms": percentile_ms(upload, 50),
            }
        )
    return rows


# --- main ---------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images_folder", type=Path, default=DEFAULT_IMAGES, help="photos (generated when absent)")
    p.add_argument("--images", type=int, default=1000, help="how many photos (default 1000)")
    p.add_argument("--only", default=",".join(PARTS), help=f"parts: {','.join(PARTS)}")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds where variants are compared")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--per_request", type=int, default=16)
    p.add_argument("--searches", type=int, default=200)
    p.add_argument("--max-isa", choices=["avx2"], default=None, help="emulate an AVX2-only CPU for oneDNN (torch)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results")
    p.add_argument("--variants", default="", help="only these, e.g. 'openvino fp32,openvino int8' (default: all)")
    args = p.parse_args(argv)
    if args.variants:
        os.environ["IMGSIM_BENCH_VARIANTS"] = args.variants
    if args.max_isa and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        # oneDNN reads it when torch loads: re-run this process with it set.
        # MKL (torch's fp32 matmul, the bound) has its own switch.
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
        return subprocess.call([sys.executable, "-m", "tests.benchmarks.engines", *(argv or sys.argv[1:])], env=env)

    parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        print(f"error: unknown part(s) {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    m = machine()
    print_machine(m)
    results: dict[str, Any] = {"machine": m, "args": {k: str(v) for k, v in vars(args).items()}}
    work = Path(tempfile.mkdtemp(prefix="imgsim-engines-"))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"engines-{time.strftime('%Y%m%d-%H%M%S')}.json"
    try:
        folder = image_folder(args.images_folder, args.images, work)
        files = sorted(folder.iterdir())
        steps: dict[str, tuple[str, Callable[[], list[Row]]]] = {
            "forward": ("Forward pass, side by side", lambda: bench_forward(files, work, args.batch_size, args.rounds)),
            "agreement": ("Agreement with torch fp32", lambda: bench_agreement(files, work, args.batch_size)),
            "quality": ("Retrieval quality per variant (int8 gate)", lambda: bench_quality(folder, work, args.images)),
            "startup": ("Cold start to the first forward pass", lambda: bench_startup(work, args.rounds)),
            "cli": ("Whole-process CLI vs the naive loop", lambda: bench_cli(folder, work)),
            "overlap": ("Decode and forward: overlap or take turns", lambda: bench_overlap(files, work, args.rounds)),
            "api": (
                "API before (torch) and after (auto)",
                lambda: bench_api(files, work, args.per_request, args.searches),
            ),
        }
        for key in parts:
            title, step = steps[key]
            print(f"\n... {title}", flush=True)
            started = time.perf_counter()
            rows = step()
            results[key] = rows
            print_table(f"{title} ({time.perf_counter() - started:.0f} s)", rows)
            print(f"(CPU: {m['cpu']}; " + ", ".join(k for k, v in m["flags"].items() if v) + ")")
            out.write_text(json.dumps(results, indent=2, default=str))  # after each part: a long run keeps it
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Quality and throughput of the web API on real photos, through a real `uvicorn app.main:app` process.

    python -m tests.benchmarks.api_quality [--photos DIR] [--retrieval 100] [--concurrency 4]

1. `POST /predict` over every photo (`<wordnet id>_<name>.JPEG`; sorted wordnet ids = class index): top-1
   accuracy, and images/s with `--concurrency` clients sending 8 photos per request (micro-batched).
2. `POST /ingest` of the first `--retrieval` photos, then `POST /search` (k=1) with a recompressed, cropped,
   mirrored and greyscale copy of each: the share found at rank 1.
Prints a table and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image, ImageOps

from tests.app.server import running_server

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PHOTOS = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-sample"


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _crop(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.crop((int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9)))


VARIANTS: dict[str, Callable[[Image.Image], bytes]] = {
    "recompressed q=20": lambda img: _jpeg(img, 20),
    "centre crop 80%": lambda img: _jpeg(_crop(img)),
    "mirrored": lambda img: _jpeg(ImageOps.mirror(img)),
    "greyscale": lambda img: _jpeg(ImageOps.grayscale(img)),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    p.add_argument("--retrieval", type=int, default=100, help="photos ingested for the retrieval test")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results" / "api_quality.json")
    args = p.parse_args(argv)
    photos = sorted(f for f in args.photos.iterdir() if f.suffix.upper() == ".JPEG")
    if not photos:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 1
    class_of = {wnid: i for i, wnid in enumerate(sorted({f.name.split("_")[0] for f in photos}))}
    results: dict[str, object] = {"machine": platform.platform(), "photos": len(photos)}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(Path(tmp) / "data", Path(tmp) / "log") as url,
        httpx.Client(base_url=url, timeout=600) as http,
    ):
        stats = http.get("/stats").json()
        results |= {"model": stats["model"], "precision": stats["precision"]}
        chunks = [photos[i : i + 8] for i in range(0, len(photos), 8)]

        def predict(chunk: list[Path]) -> list[bool]:
            files = [("files", (f.name, f.read_bytes())) for f in chunk]
            response = http.post("/predict", files=files, params={"top_k": 1})
            response.raise_for_status()
            return [
                r["predictions"][0]["class_index"] == class_of[f.name.split("_")[0]]
                for f, r in zip(chunk, response.json()["results"], strict=True)
            ]

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            hits = [h for chunk_hits in pool.map(predict, chunks) for h in chunk_hits]
        seconds = time.perf_counter() - started
        results["predict_top1"] = sum(hits) / len(hits)
        results["predict_img_per_s"] = len(hits) / seconds

        subset = photos[: args.retrieval]
        for start in range(0, len(subset), 32):
            files = [("files", (f.name, f.read_bytes())) for f in subset[start : start + 32]]
            http.post("/ingest", files=files).raise_for_status()
        rank1: dict[str, float] = {}
        for variant, make in VARIANTS.items():
            found = 0
            for f in subset:
                query = make(Image.open(f))
                response = http.post("/search", files={"file": ("q.jpg", query)}, params={"k": 1})
                response.raise_for_status()
                found += response.json()["results"][0]["filename"] == f.name
            rank1[variant] = found / len(subset)
        results["retrieval_photos"] = len(subset)
        results["rank1"] = rank1

    rows = [
        ("predict top-1", f"{results['predict_top1']:.3f}", f"{len(photos)} photos"),
        ("predict throughput", f"{results['predict_img_per_s']:.1f} img/s", f"{args.concurrency} clients x 8 photos"),
    ]
    rows += [(f"rank-1 from {v}", f"{r:.3f}", f"{len(subset)} photos") for v, r in rank1.items()]
    width = max(len(r[0]) for r in rows)
    print(f"{results['model']} ({results['precision']}) through the API on {results['machine']}")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>12}  {note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The library view's first page with a big library: `python -m tests.benchmarks.web_library`.

Inserts synthetic rows straight through the store (random unit vectors of the model's width, five ImageNet
predictions each; the first page's rows get real JPEG bytes so their thumbnails can be made), starts the real
service (uvicorn) on that data directory, and times what the library view asks for: the HTML, its scripts and
stylesheet, `GET /stats`, `GET /images?offset=0&limit=48`, and the page's 48 thumbnails (made on first request,
then read from the data dir, then revalidated with If-None-Match). Also the last page and the two filters.
With Chromium installed it also loads `/library` in the browser and times it until the thumbnails in the
window are shown.
Prints tables and writes JSON to bench-results/.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from index.config import Settings
from index.model.embedder import Embedder
from index.model.registry import Prediction, imagenet_labels
from index.storage.store import ImageStore, NewImage
from tests.app.server import running_server
from tests.conftest import IMAGES_DIR, REPO_ROOT

PAGE_SIZE = 48  # the library view's page (app/web/static/library.js)
BROWSER_CONNECTIONS = 6  # a browser's parallel connections to one HTTP/1.1 host
Row = dict[str, Any]


def cpu_flags() -> str:
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(f for f in wanted if f in flags) or "none of " + ", ".join(wanted)


def first_page_photos(count: int) -> list[bytes]:
    """Distinct real JPEGs (crops of the sample photos) for the rows the first page shows."""
    sources = sorted(p for p in IMAGES_DIR.iterdir() if p.suffix in {".jpg", ".png"})
    out = []
    for n in range(count):
        with Image.open(sources[n % len(sources)]) as img:
            rgb = img.convert("RGB")
        shift = 4 * (n // len(sources) + 1)
        buf = io.BytesIO()
        rgb.crop((shift, shift, rgb.width - shift, rgb.height - shift)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def fill_store(data_dir: Path, rows: int, seed: int = 0) -> tuple[float, int]:
    """Insert `rows` synthetic images as the ingest pipeline would; returns (seconds, dim)."""
    embedder = Embedder(Settings(data_dir=data_dir))
    dim, labels = embedder.dim, imagenet_labels()
    rng = np.random.default_rng(seed)
    photos = first_page_photos(PAGE_SIZE)
    store = ImageStore(data_dir)
    started = time.perf_counter()
    batch = 2000
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        classes = rng.integers(0, len(labels), (n, 5))
        scores = np.sort(rng.dirichlet(np.ones(6), n)[:, :5], axis=1)[:, ::-1]
        images = []
        for i in range(n):
            number = start + i
            if number < len(photos):
                data = photos[number]
                sha = hashlib.sha256(data).hexdigest()
                store.write_blob(sha, data)
                size, (width, height), fmt = len(data), Image.open(io.BytesIO(data)).size, "JPEG"
            else:
                sha = hashlib.sha256(f"synthetic {seed} {number}".encode()).hexdigest()
                size, width, height, fmt = 200_000, 1024, 768, "JPEG"
            preds = [Prediction(labels[c], int(c), float(s)) for c, s in zip(classes[i], scores[i], strict=True)]
            images.append(NewImage(sha, size, width, height, fmt, preds, vectors[i], f"photo_{number:06d}.jpg"))
        store.insert(images, embedder.version, "0" * 64)
        if start == 0:
            store.set_meta({"model": embedder.version, "dim": str(dim)})
        print(f"\r  inserted {start + n:,} / {rows:,} rows", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    store.close()
    return time.perf_counter() - started, dim


def timed(fn: Callable[[], httpx.Response], repeats: int) -> tuple[list[float], httpx.Response]:
    samples, response = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        response = fn()
        samples.append(time.perf_counter() - t0)
        response.raise_for_status()
    assert response is not None
    return samples, response


def row(name: str, samples: Sequence[float], response: httpx.Response | None = None, note: str = "") -> Row:
    ms = sorted(s * 1000 for s in samples)
    out: Row = {
        "request": name,
        "runs": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "max_ms": round(ms[-1], 2),
    }
    if response is not None:
        out["bytes"] = len(response.content)
    if note:
        out["note"] = note
    return out


def fetch_thumbnails(http: httpx.Client, ids: list[int], etags: dict[int, str] | None = None) -> float:
    """All the page's thumbnails, BROWSER_CONNECTIONS at a time, as a browser would; returns seconds."""

    def one(image_id: int) -> None:
        headers = {"If-None-Match": etags[image_id]} if etags else {}
        response = http.get(f"/images/{image_id}/thumbnail", headers=headers)
        assert response.status_code == (304 if etags else 200), response.status_code

    t0 = time.perf_counter()
    with ThreadPoolExecutor(BROWSER_CONNECTIONS) as pool:
        list(pool.map(one, ids))
    return time.perf_counter() - t0


def bench_http(url: str, rows: int, repeats: int) -> list[Row]:
    out: list[Row] = []
    limits = httpx.Limits(max_connections=BROWSER_CONNECTIONS)
    with httpx.Client(base_url=url, timeout=120, limits=limits) as http:
        samples, response = timed(lambda: http.get("/library"), repeats)
        out.append(row("GET /library (HTML)", samples, response))
        assets = ["/static/style.css", "/static/library.js", "/static/api.js", "/static/ui.js"]
        samples, response = timed(lambda: [http.get(a) for a in assets][-1], repeats)
        out.append(row("GET the 4 static files", samples, note="one after another"))
        samples, response = timed(lambda: http.get("/stats"), repeats)
        out.append(row("GET /stats", samples, response))
        first_page = {"offset": 0, "limit": PAGE_SIZE}
        samples, response = timed(lambda: http.get("/images", params=first_page), repeats)
        listing = response.json()
        assert listing["total"] == rows and len(listing["items"]) == PAGE_SIZE
        out.append(row(f"GET /images?offset=0&limit={PAGE_SIZE}", samples, response))
        last = {"offset": rows - PAGE_SIZE, "limit": PAGE_SIZE}
        samples, response = timed(lambda: http.get("/images", params=last), repeats)
        out.append(row(f"GET /images?offset={rows - PAGE_SIZE}&limit={PAGE_SIZE}", samples, response))
        by_label = {"label": "tabby", "limit": PAGE_SIZE}
        samples, response = timed(lambda: http.get("/images", params=by_label), repeats)
        out.append(row("GET /images?label=tabby", samples, response, note=f"total {response.json()['total']:,}"))
        by_name = {"name": "photo_0999", "limit": PAGE_SIZE}
        samples, response = timed(lambda: http.get("/images", params=by_name), repeats)
        out.append(row("GET /images?name=photo_0999", samples, response, note=f"total {response.json()['total']:,}"))

        ids = [item["id"] for item in listing["items"]]
        cold = fetch_thumbnails(http, ids)
        out.append(row(f"{PAGE_SIZE} thumbnails, first request (made)", [cold], note="6 connections"))
        warm = [fetch_thumbnails(http, ids) for _ in range(repeats)]
        out.append(row(f"{PAGE_SIZE} thumbnails, kept", warm, note="6 connections"))
        etags = {i: http.get(f"/images/{i}/thumbnail").headers["etag"] for i in ids}
        revalidated = [fetch_thumbnails(http, ids, etags) for _ in range(repeats)]
        out.append(row(f"{PAGE_SIZE} thumbnails, 304 revalidation", revalidated, note="6 connections"))
    return out


def bench_browser(url: str, repeats: int) -> list[Row]:
    """`/library` in Chromium until every thumbnail in the window is shown (a fresh browser cache each run)."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        print("Chromium not installed: browser timing skipped", file=sys.stderr)
        return []
    from playwright.sync_api import sync_playwright

    # Thumbnails load lazily: those in the window are the ones a person waits for.
    script = """() => {
        const imgs = [...document.querySelectorAll('#results img')]
            .filter(i => i.getBoundingClientRect().top < window.innerHeight);
        return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
    }"""
    samples = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=["--disable-gpu"])
        for _ in range(repeats):
            context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto("/library")
            page.wait_for_function(script, timeout=60_000)
            samples.append(time.perf_counter() - t0)
            context.close()
        browser.close()
    return [
        row("Chromium: /library until the thumbnails in view are shown", samples, note="new browser cache each run")
    ]


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n## {title}")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cells = [["" if r.get(k) is None else str(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic images in the library")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each request")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results")
    args = parser.parse_args(argv)
    if args.rows < PAGE_SIZE:
        parser.error(f"--rows must be at least {PAGE_SIZE}")

    flags = cpu_flags()
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, flags: {flags}")
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="imgsim-web-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        fill_s, dim = fill_store(data_dir, args.rows)
        print(f"inserted {args.rows:,} rows ({dim}-d vectors) in {fill_s:.1f} s")
        t0 = time.perf_counter()
        # An exact index: building HNSW for 100k vectors takes minutes and the library view never searches.
        with running_server(data_dir, Path(tmp) / "server.log", IMGSIM_INDEX_KIND="flat") as url:
            start_s = time.perf_counter() - t0
            print(f"server ready in {start_s:.1f} s (model load and building the vector index from SQLite)")
            http_rows = bench_http(url, args.rows, args.repeats)
            browser_rows = bench_browser(url, min(args.repeats, 5))
    print_table(f"Library view, {args.rows:,} images: HTTP requests", http_rows)
    if browser_rows:
        print_table(f"Library view, {args.rows:,} images: in the browser", browser_rows)

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"web_library-{stamp}.json"
    result = {
        "benchmark": "web_library",
        "rows": args.rows,
        "page_size": PAGE_SIZE,
        "dim": dim,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
        "fill_seconds": fill_s,
        "server_start_seconds": start_s,
        "http": http_rows,
        "browser": browser_rows,
    }
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

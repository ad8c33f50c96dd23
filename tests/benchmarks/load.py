"""Latency and errors under load: locust (headless, loopback only) against a real `uvicorn app.main:app`.

    python -m tests.benchmarks.load [--users 1 8 32] [--seconds 30] [--max-requests 5000]

The server starts over a data directory holding 100 photos; then, for each number of concurrent users, locust
runs a mix of 60% `GET /search`, 20% `POST /search` (an upload) and 20% `POST /ingest` (one new photo each),
bounded in time (`--seconds`) and in count (`--max-requests`). 503s (a full inference queue or a request past
its deadline, with Retry-After) are counted apart from other errors. Prints a table and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.app.server import running_server
from tests.conftest import encode_image

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SEED_IMAGES = 100


def machine() -> dict[str, Any]:
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
                flags = [f for f in line.split(":", 1)[1].split() if f in wanted]
                break
    except OSError:
        pass
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "cpu_flags": flags}


def seed(url: str) -> None:
    images = [("files", (f"seed{n}.png", encode_image("PNG", (224, 224), seed=n))) for n in range(SEED_IMAGES)]
    with httpx.Client(base_url=url, timeout=300) as http:
        for start in range(0, len(images), 25):
            http.post("/ingest", files=images[start : start + 25]).raise_for_status()


def run_level(url: str, users: int, seconds: int, max_requests: int, workdir: Path) -> list[dict[str, Any]]:
    prefix = workdir / f"u{users}"
    env = {
        **os.environ,
        "LOAD_MAX_REQUESTS": str(max_requests),
        "LOAD_STORED_IDS": str(SEED_IMAGES),
        "LOAD_SEED_BASE": str(1_000_000 * users),
    }
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
        "-u", str(users), "-r", str(users), "--run-time", f"{seconds}s", "--stop-timeout", "30",
        "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=False, capture_output=True, timeout=seconds + 120)
    failures: dict[str, dict[str, int]] = {}
    with open(f"{prefix}_failures.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            kind = "503" if "503" in row["Error"] else "other"
            failures.setdefault(row["Name"], {"503": 0, "other": 0})[kind] += int(row["Occurrences"])
    rows = []
    with open(f"{prefix}_stats.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            name = row["Name"]
            fails = failures.get(name, {"503": 0, "other": 0})
            if name == "Aggregated":
                fails = {kind: sum(f[kind] for f in failures.values()) for kind in ("503", "other")}
            rows.append(
                {
                    "users": users,
                    "endpoint": name,
                    "requests": int(row["Request Count"]),
                    "per_s": round(float(row["Requests/s"]), 1),
                    "p50_ms": float(row["50%"]),
                    "p99_ms": float(row["99%"]),
                    "errors_503": fails["503"] if name != "Aggregated" else sum(f["503"] for f in failures.values()),
                    "errors_other": fails["other"]
                    if name != "Aggregated"
                    else sum(f["other"] for f in failures.values()),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--max-requests", type=int, default=5000)
    p.add_argument("--queue-limit", type=int, default=None, help="the server's IMGSIM_INFERENCE_QUEUE_LIMIT")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results" / "load.json")
    args = p.parse_args(argv)
    info = machine()
    print(f"machine: {info}", flush=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="imgsim-load-") as tmp:
        workdir = Path(tmp)
        env = {} if args.queue_limit is None else {"IMGSIM_INFERENCE_QUEUE_LIMIT": str(args.queue_limit)}
        with running_server(workdir / "data", workdir / "server.log", **env) as url:
            seed(url)
            for users in args.users:
                started = time.monotonic()
                results.extend(run_level(url, users, args.seconds, args.max_requests, workdir))
                print(f"{users} users: {time.monotonic() - started:.0f} s", flush=True)
    print("\n| users | endpoint | requests | req/s | p50 ms | p99 ms | 503 | other errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['users']} | {r['endpoint']} | {r['requests']} | {r['per_s']} | {r['p50_ms']:.0f} | "
            f"{r['p99_ms']:.0f} | {r['errors_503']} | {r['errors_other']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"machine": info, "seconds": args.seconds, "queue_limit": args.queue_limit, "results": results}
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

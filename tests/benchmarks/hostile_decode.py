"""What hostile images cost a real server: `python -m tests.benchmarks.hostile_decode`.

Starts the service (`python -m app.serve`, default settings) and sends each hostile file of `tests.hostile`
to `POST /embed` on its own, measuring the server's resident memory above idle (psutil, sampled every 10 ms);
each on a fresh server, since memory freed by one decode is kept by the allocator and hides the next one's.
Then ten concurrent requests of two such files each, and a progressive JPEG whose last scan is repeated 600
times. Prints a table and writes JSON to bench-results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from tests import hostile
from tests.app.server import start_server, stop, wait_ready
from tests.conftest import IMAGES_DIR, REPO_ROOT

FILES: dict[str, Callable[[], bytes]] = {
    "16-bit grey PNG": hostile.grey16_png,
    "float32 TIFF": hostile.float_tiff,
    "transparent GIF, 200 frames": lambda: hostile.big_gif(frames=200),
    "half-transparent RGBA PNG": hostile.rgba_png,
}


def peak_during(process: psutil.Process, work: Callable[[], object]) -> tuple[int, float]:
    """Peak resident bytes above the size before `work`, and its seconds."""
    idle = peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return peak - idle, time.perf_counter() - started


def post(url: str, *parts: tuple[str, bytes]) -> int:
    form = [("files", part) for part in parts]
    return httpx.post(f"{url}/embed", files=form, timeout=300).status_code


def row(request: str, statuses: list[int], added: int, seconds: float, ratio: object = "") -> dict[str, object]:
    return {
        "request": request,
        "status": " ".join(f"{c}x{statuses.count(c)}" for c in sorted(set(statuses))),
        "peak_mb_above_idle": round(added / 1e6),
        "x_rgb8": ratio,
        "seconds": round(seconds, 2),
    }


def on_a_fresh_server(
    measure: Callable[[str, psutil.Process], list[dict[str, object]]],
) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc, url = start_server(folder / "data", folder / "server.log")
        try:
            wait_ready(proc, url, folder / "server.log")
            post(url, ("cat.png", (IMAGES_DIR / "cat.png").read_bytes()))
            time.sleep(1)
            return measure(url, psutil.Process(proc.pid))
        finally:
            stop(proc)


def one_file(url: str, process: psutil.Process, name: str, data: bytes) -> dict[str, object]:
    statuses: list[int] = []
    added, seconds = peak_during(process, lambda: statuses.append(post(url, ("x", data))))
    ratio = round(added / (hostile.WIDTH * hostile.HEIGHT * 3), 2)
    return row(f"one {name} ({len(data) // 1000} KB)", statuses, added, seconds, ratio)


def concurrent(url: str, process: psutil.Process, files: list[bytes]) -> dict[str, object]:
    statuses: list[int] = []

    def send(n: int) -> None:
        statuses.append(post(url, ("a", files[n % len(files)]), ("b", files[(n + 1) % len(files)])))

    def burst() -> None:
        threads = [threading.Thread(target=send, args=(n,)) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    added, seconds = peak_during(process, burst)
    return row("ten concurrent requests of two of them", statuses, added, seconds)


def scan_bomb(url: str, process: psutil.Process) -> dict[str, object]:
    data = hostile.many_scan_jpeg(repeats=600)
    statuses: list[int] = []
    added, seconds = peak_during(process, lambda: statuses.append(post(url, ("s.jpg", data))))
    return row(f"progressive JPEG, 606 scans ({len(data) // 1000} KB)", statuses, added, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results")
    args = parser.parse_args()
    files = {name: make() for name, make in FILES.items()}
    rows: list[dict[str, object]] = []
    for name, data in files.items():
        rows += on_a_fresh_server(lambda url, process, d=data, n=name: [one_file(url, process, n, d)])
    together = list(files.values())
    rows += on_a_fresh_server(lambda url, process: [concurrent(url, process, together), scan_bomb(url, process)])
    print(f"{'request':<52} {'status':<12} {'MB above idle':>13} {'x RGB8':>7} {'s':>6}")
    for r in rows:
        print(
            f"{r['request']!s:<52} {r['status']!s:<12} {r['peak_mb_above_idle']!s:>13} "
            f"{r['x_rgb8']!s:>7} {r['seconds']!s:>6}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "hostile_decode.json"
    meta = {"date": datetime.now(UTC).isoformat(), "machine": platform.platform(), "rows": rows}
    path.write_text(json.dumps(meta, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

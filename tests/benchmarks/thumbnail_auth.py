"""How the page's images authenticate, timed both ways: `python -m tests.benchmarks.thumbnail_auth`.

On a server with API keys, a library page's 48 thumbnails are loaded in Chromium (cache disabled, the
thumbnails already kept in the data directory) either as the page loads them, `<img src>` carrying the
HttpOnly session cookie, or the other way a page can avoid keys in URLs: `fetch` with the `X-API-Key` header,
then a `blob:` URL for each image. Prints a table and writes JSON to bench-results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from tests.app.server import running_server
from tests.conftest import REPO_ROOT
from tests.web.sample import derived_photos, launch_chromium

KEY = "bench-writer"
PAGE_SIZE = 48

LOAD_BY_COOKIE = """async (ids) => {
    const t0 = performance.now();
    await Promise.all(ids.map((id) => new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = resolve; img.onerror = reject;
        img.src = `/images/${id}/thumbnail`;
    })));
    return performance.now() - t0;
}"""

LOAD_BY_FETCH = """async ([ids, key]) => {
    const t0 = performance.now();
    await Promise.all(ids.map(async (id) => {
        const response = await fetch(`/images/${id}/thumbnail`, { headers: { "X-API-Key": key } });
        const url = URL.createObjectURL(await response.blob());
        await new Promise((resolve, reject) => {
            const img = new Image();
            img.onload = resolve; img.onerror = reject;
            img.src = url;
        });
    }));
    return performance.now() - t0;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = derived_photos(folder / "photos", PAGE_SIZE)
        with running_server(folder / "data", folder / "server.log", IMGSIM_API_KEYS=f"{KEY}:write") as url:
            headers = {"X-API-Key": KEY}
            ids: list[int] = []
            with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
                for start in range(0, len(photos), 16):
                    files = [("files", (p.name, p.read_bytes())) for p in photos[start : start + 16]]
                    response = http.post("/ingest", files=files)
                    response.raise_for_status()
                    ids += [r["id"] for r in response.json()["results"]]
                for image_id in ids:  # made once and kept, as on a library already browsed
                    http.get(f"/images/{image_id}/thumbnail").raise_for_status()
            samples: dict[str, list[float]] = {"cookie": [], "fetch": []}
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                context = browser.new_context(base_url=url)
                page = context.new_page()
                page.goto("/library")
                page.evaluate(f"fetch('/session', {{method: 'POST', headers: {{'X-API-Key': '{KEY}'}}}})")
                page.wait_for_load_state("networkidle")
                cdp = context.new_cdp_session(page)
                cdp.send("Network.enable")
                cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
                for _ in range(args.runs):
                    samples["cookie"].append(page.evaluate(LOAD_BY_COOKIE, ids))
                    samples["fetch"].append(page.evaluate(LOAD_BY_FETCH, [ids, KEY]))
                browser.close()
    rows = [
        {
            "way": way,
            "runs": len(ms),
            "median_ms": round(statistics.median(ms), 1),
            "min_ms": round(min(ms), 1),
            "max_ms": round(max(ms), 1),
        }
        for way, ms in samples.items()
    ]
    print(f"{PAGE_SIZE} kept thumbnails, Chromium, cache disabled, {args.runs} runs each")
    print(f"{'way':<8} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for row in rows:
        print(f"{row['way']:<8} {row['median_ms']:>10} {row['min_ms']:>8} {row['max_ms']:>8}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "thumbnail_auth.json"
    result = {"date": datetime.now(UTC).isoformat(), "machine": platform.platform(), "thumbnails": PAGE_SIZE}
    path.write_text(json.dumps({**result, "rows": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

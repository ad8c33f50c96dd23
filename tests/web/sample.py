"""Real photos for the web page's tests and screenshots, and Chromium launched the way this machine has it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Playwright

from tests.conftest import IMAGES_DIR, derived_photos

__all__ = ["derived_photos"]

# Debian's chromium package; Playwright's own browser download is not used.
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}


def repo_photos() -> list[Path]:
    return sorted(p for p in IMAGES_DIR.iterdir() if p.suffix in {".jpg", ".png"})


def made_photos(folder: Path) -> list[Path]:
    """Six more photos for the site, made from the sample ones that show neither a cat nor a coffee: each
    turned a quarter, and two pairs side by side (so searches have more than ten results to show)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    opened = {}
    for name in ("astronaut.jpg", "camera.jpg", "coins.jpg", "rocket.jpg"):
        with Image.open(IMAGES_DIR / name) as img:
            opened[name] = img.convert("RGB")
    made = [img.rotate(90, expand=True) for img in opened.values()]
    for left, right in (("astronaut.jpg", "rocket.jpg"), ("camera.jpg", "coins.jpg")):
        a, b = opened[left], opened[right].resize(opened[left].size)
        pair = Image.new("RGB", (a.width * 2, a.height))
        pair.paste(a, (0, 0))
        pair.paste(b, (a.width, 0))
        made.append(pair)
    paths = []
    for n, img in enumerate(made):
        paths.append(folder / f"made_{n}.jpg")
        img.save(paths[-1], "JPEG", quality=90)
    return paths


def ingest(url: str, paths: Sequence[Path], batch: int = 32) -> dict[str, int]:
    """Store `paths` through the API; file name -> id."""
    ids: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=300) as http:
        for start in range(0, len(paths), batch):
            files = [("files", (p.name, p.read_bytes())) for p in paths[start : start + batch]]
            response = http.post("/ingest", files=files)
            response.raise_for_status()
            ids.update({r["filename"]: r["id"] for r in response.json()["results"]})
    return ids


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--disable-gpu"])

"""Real photos for the web page's tests and screenshots, and Chromium launched the way this machine has it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Playwright

from tests.conftest import IMAGENET_SAMPLE_DIR, IMAGES_DIR

# Debian's chromium package; Playwright's own browser download is not used.
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}


def repo_photos() -> list[Path]:
    return sorted(p for p in IMAGES_DIR.iterdir() if p.suffix in {".jpg", ".png"})


def imagenet_photos(count: int, skip: int = 0) -> list[Path]:
    """`count` photos of the shared ImageNet sample (none when it is absent), in name order from `skip`."""
    if not IMAGENET_SAMPLE_DIR.is_dir():
        return []
    return sorted(IMAGENET_SAMPLE_DIR.glob("*.JPEG"))[skip : skip + count]


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


def derived_photos(folder: Path, count: int, start: int = 0) -> list[Path]:
    """`count` new JPEGs cut from the sample photos (distinct crops, so distinct content), written to `folder`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = repo_photos()
    paths = []
    for n in range(start, start + count):
        with Image.open(sources[n % len(sources)]) as img:
            rgb = img.convert("RGB")
        shift = 8 * (n // len(sources) + 1)
        crop = rgb.crop((shift, shift, rgb.width - shift, rgb.height - shift))
        path = folder / f"derived_{n:03d}.jpg"
        crop.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths

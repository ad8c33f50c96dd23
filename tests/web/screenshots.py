"""Screenshots of each view of the web page, for the README and the manual (docs/): `python -m tests.web.screenshots`.

Starts the service on a temporary data directory, stores the sample photos (and, with `--photos DIR`, some
JPEG photos of that folder, e.g. a photo collection of one's own), and saves docs/search.png, library.png,
detail.png, ingest.png, duplicates.png (when the server has the duplicates API) and trash.png (when it has the
trash); then phone-light.png (the library at 390 x 844), phone-dark.png (a search there, dark theme) and
wide.png (the library at 1920 x 1080).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import httpx
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from tests.app.server import running_server
from tests.conftest import IMAGES_DIR, REPO_ROOT
from tests.web.sample import VIEWPORT, ingest, launch_chromium, repo_photos

PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1920, "height": 1080}


def more_photos(folder: Path | None, count: int, skip: int = 0) -> list[Path]:
    """`count` JPEG photos of `folder` (none without one), in name order from `skip`."""
    if folder is None:
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[skip : skip + count]


def settle(page: Page) -> None:
    """Wait until the view's requests (thumbnails included) are done and nothing is loading."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function("!document.querySelector('.status.busy')")


def shrink(path: Path) -> None:
    """256 colours: a third of the size, still sharp for text and fine for photos at thumbnail size."""
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def capture(out: Path, photos: Path | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, log = Path(tmp) / "data", Path(tmp) / "server.log"
        with running_server(data_dir, log) as url, sync_playwright() as playwright:
            ids = ingest(url, repo_photos() + more_photos(photos, 38))
            has_duplicates = "/duplicates" in httpx.get(f"{url}/openapi.json").json()["paths"]
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport=VIEWPORT, base_url=url)

            def shot(name: str, on: Page = page) -> None:
                settle(on)
                path = out / f"{name}.png"
                on.screenshot(path=str(path))
                shrink(path)
                saved.append(path)

            page.goto(f"/?ref={ids['cat.png']}&k=10&metric=cosine&label=")
            page.locator(".card").first.wait_for()
            shot("search")

            page.goto("/library")
            page.locator(".card").first.wait_for()
            shot("library")

            page.goto(f"/library/{ids['coffee.jpg']}")
            page.locator("#neighbours .card").first.wait_for()
            shot("detail")

            broken = Path(tmp) / "notes.jpg"
            broken.write_bytes(b"this is not an image")
            page.goto("/library/add")
            page.set_input_files("#files", [*more_photos(photos, 6, skip=38), IMAGES_DIR / "cat.png", broken])
            page.get_by_text("Done", exact=False).first.wait_for(timeout=120_000)
            shot("ingest")

            if has_duplicates:
                page.goto("/library/duplicates")
                page.locator(".group, .status.error, .empty").first.wait_for()
                shot("duplicates")
            if "/trash" in httpx.get(f"{url}/openapi.json").json()["paths"]:
                for name in ("camera.jpg", "coins.jpg", "rocket.jpg"):
                    httpx.delete(f"{url}/images/{ids[name]}")
                page.goto("/library/trash")
                page.locator(".card").first.wait_for()
                shot("trash")

            # A phone in the light and in the dark theme, and a wide screen.
            for name, size, scheme, path in (
                ("phone-light", PHONE, "light", "/library"),
                ("phone-dark", PHONE, "dark", f"/?ref={ids['cat.png']}&k=10&metric=cosine&label="),
                ("wide", WIDE, "light", "/library"),
            ):
                other = browser.new_page(viewport=size, base_url=url, color_scheme=scheme)  # type: ignore[arg-type]
                other.goto(path)
                other.locator(".card").first.wait_for()
                shot(name, other)
                other.close()
            browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs", help="folder for the PNG files")
    parser.add_argument("--photos", type=Path, default=None, help="a folder of JPEG photos to fill the library")
    args = parser.parse_args()
    for path in capture(args.out, args.photos):
        print(f"saved {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()

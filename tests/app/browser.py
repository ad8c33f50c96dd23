"""Headless Chromium (Debian's package, launched by path) with every request off the loopback host refused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page, Route, sync_playwright

CHROMIUM = Path(os.environ.get("IMGSIM_CHROMIUM", "/usr/bin/chromium"))
LOCAL_HOSTS = {"127.0.0.1"}


@dataclass
class OfflinePage:
    page: Page
    blocked: list[str] = field(default_factory=list)  # URLs the page tried to fetch from elsewhere
    console_errors: list[str] = field(default_factory=list)


@contextmanager
def offline_page() -> Iterator[OfflinePage]:
    """A page that can reach only 127.0.0.1: anything else is aborted and recorded, as on a machine offline."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = browser.new_context()
            page = context.new_page()
            result = OfflinePage(page)

            def only_loopback(route: Route) -> None:
                url = route.request.url
                if url.startswith(("data:", "blob:")) or urlsplit(url).hostname in LOCAL_HOSTS:
                    route.continue_()
                else:
                    result.blocked.append(url)
                    route.abort()

            context.route("**/*", only_loopback)
            page.on("console", lambda msg: result.console_errors.append(msg.text) if msg.type == "error" else None)
            yield result
        finally:
            browser.close()

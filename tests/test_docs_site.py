"""The manual (mkdocs.yml, docs/) builds with no broken link, and the README's links into it lead somewhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
# Markdown links and images: [text](target) or ![alt](target).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def readme_links_into_docs() -> list[str]:
    return [target for target in LINK.findall(README.read_text(encoding="utf-8")) if target.startswith("docs/")]


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub and MkDocs give a page's headings (lower case, punctuation dropped, spaces to -)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    headings = re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-") for heading in headings}


def test_the_manual_builds_strictly_with_no_broken_link(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", "mkdocs.yml", "--site-dir", str(site)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        # Material prints a notice about MkDocs 2 on every build unless told not to.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for page in sorted((REPO_ROOT / "docs").glob("*.md")):
        built = site / "index.html" if page.stem == "index" else site / page.stem / "index.html"
        assert built.is_file(), f"{page.name} was not built"
    assert (site / "api" / "openapi.json").is_file()


def test_every_readme_link_into_the_docs_names_a_file_and_heading_that_exist() -> None:
    links = readme_links_into_docs()
    assert len(links) >= 10, links  # the screenshot and the manual's pages at least
    for link in links:
        path, _, anchor = link.partition("#")
        target = REPO_ROOT / path
        assert target.is_file(), f"README links to {link}, which does not exist"
        if anchor:
            assert anchor in heading_anchors(target), f"README links to {link}: no such heading in {path}"


def test_the_readme_links_to_every_page_of_the_manual() -> None:
    linked = {link.partition("#")[0] for link in readme_links_into_docs()}
    pages = {f"docs/{page.name}" for page in (REPO_ROOT / "docs").glob("*.md")}
    assert pages - linked == set(), "pages the README does not lead to"


def test_the_readme_stays_a_front_door_of_at_most_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 200, f"README.md has {lines} lines: move the detail into a page under docs/"

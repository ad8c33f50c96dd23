"""File names chosen by someone else: CSV cells that a spreadsheet would run as formulas are quoted, control
characters never reach the terminal, and a folder nested 1100 levels deep is walked without recursion."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import duplicates
from client.cli import main
from index.ingest import list_image_files
from tests.client.test_cli import run
from tests.conftest import IMAGES_DIR

FORMULAS = ("=HYPERLINK(1).jpg", "+1+2.jpg", "-2+3.jpg", "@SUM(A1).jpg", "\tTAB.jpg")
ESCAPES = "red\x1b[31m\x1b]0;owned\x07\u202egpj.jpg"


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(IMAGES_DIR / "cat.png", folder / "cat.png")
    sources = ["coffee.jpg", "rocket.jpg", "astronaut.jpg", "camera.jpg", "coins.jpg", "cat_crop.jpg"]
    for name, source in zip((*FORMULAS, ESCAPES), sources, strict=True):
        shutil.copy(IMAGES_DIR / source, folder / name)
    shutil.copy(IMAGES_DIR / "coffee.jpg", folder / "=copy of coffee.jpg")  # a duplicate group with a formula
    return folder


def _args(folder: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["--images_folder", str(folder), "--data_dir", str(tmp_path / "data"), "--quiet", *extra]


def test_csv_cells_that_start_like_a_formula_are_quoted(
    capsys: pytest.CaptureFixture[str], hostile_folder: Path, tmp_path: Path
) -> None:
    args = [*_args(hostile_folder, tmp_path), "--ref_image", "cat.png", "--top_k", "0", "--csv"]
    code, out, err = run(capsys, main, *args)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["file"] for r in rows} >= {f"'{name}" for name in FORMULAS}
    for row in rows:
        assert not row["file"].startswith(("=", "+", "-", "@", "\t", "\r")), row
        assert not row["path"].startswith(("=", "+", "-", "@")), row
        float(row["cosine"])  # numbers stay numbers
    code, out, _ = run(capsys, duplicates.main, *_args(hostile_folder, tmp_path, "--csv"))
    assert code == 0
    group = list(csv.DictReader(io.StringIO(out)))
    assert "'=copy of coffee.jpg" in {r["filename"] for r in group}


def test_control_characters_in_names_never_reach_the_terminal(
    capsys: pytest.CaptureFixture[str], hostile_folder: Path, tmp_path: Path
) -> None:
    (hostile_folder / "broken\x1b[2J.jpg").write_bytes(b"not an image")
    code, out, err = run(capsys, main, *_args(hostile_folder, tmp_path), "--ref_image", "cat.png", "--top_k", "0")
    assert code == 0, err
    for text in (out, err):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "red\\x1b[31m\\x1b]0;owned\\x07\\u202egpj.jpg" in out
    assert "skipped broken\\x1b[2J.jpg" in err
    shutil.copy(hostile_folder / ESCAPES, hostile_folder / "second copy.jpg")
    code, out, _ = run(capsys, duplicates.main, *_args(hostile_folder, tmp_path))
    assert code == 0 and "\x1b" not in out and "\\x1b[31m" in out


def deep_folder(root: Path, levels: int) -> Path:
    """`root/d/d/.../d` (`levels` folders), made one level at a time (os.makedirs recurses too)."""
    current = root
    for _ in range(levels):
        current = current / "d"
        os.mkdir(current)
    return current


def remove_deep_folder(root: Path) -> None:
    """Remove what `deep_folder` made, bottom up (shutil.rmtree, and so pytest's clean-up, recurses too)."""
    folders = [root]
    while (folders[-1] / "d").is_dir():
        folders.append(folders[-1] / "d")
    for folder in reversed(folders):
        for entry in os.scandir(folder):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        os.rmdir(folder)


@pytest.fixture
def deep_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "deep"
    root.mkdir()
    yield root
    remove_deep_folder(root)


def test_a_folder_1100_levels_deep_is_walked_without_recursion(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, deep_root: Path
) -> None:
    root = deep_root
    shutil.copy(IMAGES_DIR / "cat.png", root / "cat.png")
    bottom = deep_folder(root, 1100)
    shutil.copy(IMAGES_DIR / "cat_mirror.png", bottom / "cat_mirror.png")
    (bottom / "link").symlink_to(root, target_is_directory=True)  # a loop: not followed
    found = list_image_files(root, recursive=True)
    assert found == sorted([root / "cat.png", bottom / "cat_mirror.png"])
    code, out, err = run(capsys, main, *_args(root, tmp_path), "--ref_image", "cat.png", "--recursive")
    assert code == 0, err
    assert "Traceback" not in err and "cat_mirror.png" in out

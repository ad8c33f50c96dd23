"""The `find-duplicates` command: groups of a folder's copies as text, JSON, CSV and HTML; --move-to."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from client.duplicates import main
from index.config import Settings
from index.duplicates import LEVEL_MEANINGS
from index.model.embedder import Embedder
from index.model.registry import resolve_embedding
from index.service import ImageIndex
from tests.client.test_cli import assert_one_line_error, run
from tests.conftest import IMAGES_DIR, REPO_ROOT, duplicates_folder

NEAR = resolve_embedding("default").duplicates.near


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Distinct photos, two edited copies of the astronaut, a byte copy of the coffee in a subfolder."""
    return duplicates_folder(tmp_path / "photos", ("astronaut.jpg", "coffee.jpg", "rocket.jpg", "camera.jpg"))


def _args(folder: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["--images_folder", str(folder), "--data_dir", str(tmp_path / "data"), "--quiet", *extra]


def test_json_lists_each_group_with_the_kept_image_first(
    capsys: pytest.CaptureFixture[str], photo_folder: Path, tmp_path: Path
) -> None:
    code, out, err = run(capsys, main, *_args(photo_folder, tmp_path, "--json"))
    assert code == 0, err
    report = json.loads(out)
    assert report["threshold"] == NEAR and report["level"] == "near" and "copies of one capture" in report["meaning"]
    (group,) = report["groups"]  # the byte copy is in a subfolder: not seen without --recursive
    assert group["images"][0]["filename"] == "astronaut.jpg"
    assert {i["filename"] for i in group["images"]} == {"astronaut.jpg", "astronaut_mirror.jpg", "astronaut_small.jpg"}
    assert group["keep"] == group["images"][0]["id"] and group["images"][0]["similarity"] == 1.0
    assert set(group["images"][0]) == {"id", "filename", "path", "similarity", "evidence"}
    assert group["copies"] is True and "copies of one capture" in group["reason"]
    assert group["images"][0]["evidence"] is None
    assert all(i["evidence"] in ("aligned", "framing") for i in group["images"][1:])
    assert Path(group["images"][1]["path"]).parent == photo_folder.resolve()
    assert all(NEAR <= i["similarity"] < 1 for i in group["images"][1:])


def test_images_a_decision_says_are_not_duplicates_are_not_grouped(
    capsys: pytest.CaptureFixture[str], photo_folder: Path, tmp_path: Path, embedder: Embedder
) -> None:
    assert run(capsys, main, *_args(photo_folder, tmp_path, "--json"))[0] == 0
    with ImageIndex(Settings(data_dir=tmp_path / "data"), embedder) as index:
        mirror = index.resolve_ref("astronaut_mirror.jpg").id
        index.dismiss_duplicates([index.resolve_ref("astronaut.jpg").id, mirror])
    for level in ("exact", "near", "similar"):
        code, out, err = run(capsys, main, *_args(photo_folder, tmp_path, "--json", "--level", level))
        assert code == 0, err
        for group in json.loads(out)["groups"]:
            names = {i["filename"] for i in group["images"]}
            assert not {"astronaut.jpg", "astronaut_mirror.jpg"} <= names, level


def test_recursive_finds_byte_copies_in_subfolders_and_csv_has_one_row_per_file(
    capsys: pytest.CaptureFixture[str], photo_folder: Path, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, main, *_args(photo_folder, tmp_path, "--recursive", "--csv"))
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 5 and {r["group"] for r in rows} == {"1", "2"}
    coffee = [r for r in rows if r["filename"] == "coffee.jpg"]
    assert len(coffee) == 2 and coffee[0]["id"] == coffee[1]["id"]
    assert sorted(r["keep"] for r in coffee) == ["0", "1"] and float(coffee[1]["similarity"]) == 1.0


def test_text_output_marks_the_file_to_keep(
    capsys: pytest.CaptureFixture[str], photo_folder: Path, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, main, *_args(photo_folder, tmp_path))
    assert code == 0
    assert "1 groups of copies (level near: copies of one capture" in out
    assert any(line.lstrip().startswith("keep") and "astronaut.jpg" in line for line in out.splitlines())


def test_a_higher_threshold_splits_what_a_lower_one_groups(
    capsys: pytest.CaptureFixture[str], photo_folder: Path, tmp_path: Path
) -> None:
    floor = str(resolve_embedding("default").duplicates.floor)
    strict = json.loads(run(capsys, main, *_args(photo_folder, tmp_path, "--threshold", "0.9999", "--json"))[1])
    loose = json.loads(run(capsys, main, *_args(photo_folder, tmp_path, "--threshold", floor, "--json"))[1])
    assert strict["groups"] == [] and strict["threshold"] == 0.9999 and strict["level"] is None
    assert sum(len(g["images"]) for g in loose["groups"]) >= 3
    assert all(g["copies"] is False for g in loose["groups"])


def test_move_to_refuses_similar_photos(capsys: pytest.CaptureFixture[str], photo_folder: Path, tmp_path: Path) -> None:
    before = sorted(photo_folder.rglob("*"))
    for extra in (["--level", "similar"], ["--threshold", "0.6"]):
        code, out, err = run(capsys, main, *_args(photo_folder, tmp_path, *extra, "--move-to", str(tmp_path / "m")))
        assert_one_line_error(code, out, err, "moves only proven copies")
    assert sorted(photo_folder.rglob("*")) == before


def test_html_report_is_one_file_with_inline_thumbnails_and_the_kept_one_marked(
    capsys: pytest.CaptureFixture[str], photo_folder: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    code, _, _ = run(capsys, main, *_args(photo_folder, tmp_path, "--html", str(report)))
    assert code == 0
    page = report.read_text()
    assert page.count('src="data:image/jpeg;base64,') == 3
    assert page.count('class="keep"') == 1 and "astronaut_small.jpg" in page


def test_move_to_moves_all_but_the_kept_file_and_never_overwrites(
    capsys: pytest.CaptureFixture[str], photo_folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "moved"
    target.mkdir()
    (target / "astronaut_small.jpg").write_bytes(b"already here")
    code, out, err = run(capsys, main, *_args(photo_folder, tmp_path, "--move-to", str(target)))
    assert code == 0, err
    assert (photo_folder / "astronaut.jpg").exists()
    assert not (photo_folder / "astronaut_mirror.jpg").exists() and not (photo_folder / "astronaut_small.jpg").exists()
    assert (target / "astronaut_mirror.jpg").exists() and (target / "astronaut_small (1).jpg").exists()
    assert (target / "astronaut_small.jpg").read_bytes() == b"already here"
    assert sum(line.startswith("moved ") for line in out.splitlines()) == 2
    # Nothing else moved; a second run finds no groups and moves nothing.
    assert sorted(p.name for p in photo_folder.iterdir()) == [
        "astronaut.jpg",
        "camera.jpg",
        "coffee.jpg",
        "rocket.jpg",
        "sub",
    ]
    code, out, _ = run(capsys, main, *_args(photo_folder, tmp_path, "--move-to", str(target)))
    assert code == 0 and "moved" not in out and len(list(target.glob("find-duplicates-*.json"))) == 1


def test_nothing_moves_without_move_to(capsys: pytest.CaptureFixture[str], photo_folder: Path, tmp_path: Path) -> None:
    before = sorted(photo_folder.rglob("*"))
    assert run(capsys, main, *_args(photo_folder, tmp_path, "--recursive"))[0] == 0
    assert sorted(photo_folder.rglob("*")) == before


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--level", "nearish"], ["unknown level 'nearish'"]),
        (["--threshold", "1.5"], ["between 0.5 and 1"]),
        (["--threshold", "0"], ["between 0.5 and 1"]),
        (["--level", "near", "--threshold", "0.9"], ["not both"]),
        (["--json", "--csv"], ["--json or --csv"]),
        (["--images_folder", "/no/such/folder"], ["images folder not found"]),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    capsys: pytest.CaptureFixture[str], photo_folder: Path, tmp_path: Path, extra: list[str], fragments: list[str]
) -> None:
    assert_one_line_error(*run(capsys, main, *_args(photo_folder, tmp_path, *extra)), *fragments)


def test_an_empty_folder_has_no_groups(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, out, _ = run(capsys, main, *_args(tmp_path / "empty", tmp_path, "--json"))
    assert code == 0 and json.loads(out) == {
        "level": "near",
        "meaning": LEVEL_MEANINGS["near"],
        "threshold": NEAR,
        "groups": [],
    }


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["auto", "onnxruntime"])
def test_a_rerun_over_a_folder_holding_a_truncated_jpeg_exits_cleanly(
    tmp_path: Path, truncated_jpeg: bytes, engine: str
) -> None:
    # The truncated file is read again on every run (it was never stored); nothing else needs the model.
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut.jpg", "coffee.jpg", "cat.png"):
        shutil.copy(IMAGES_DIR / name, folder / name)
    (folder / "broken.jpg").write_bytes(truncated_jpeg)
    command = [sys.executable, "-m", "client.duplicates", "--images_folder", str(folder)]
    command += ["--data_dir", str(tmp_path / "data")]
    env = {**os.environ, "IMGSIM_ENGINE": engine}
    for _ in range(5):
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "0 groups of copies" in done.stdout
        assert done.stderr.startswith("skipped broken.jpg: ") and "terminate called" not in done.stderr


def test_the_module_form_has_help_with_an_example() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "client.duplicates", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "example:" in done.stdout
    assert "--move-to" in done.stdout and "--undo MANIFEST" in done.stdout and "manifest" in done.stdout

"""The `similarity_analysis` and `rebuild-index` commands, in-process and through the root entry point."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from client.cli import main, rebuild_main
from index.config import Settings
from index.model.embedder import Embedder, EmbedResult
from index.storage.store import ImageStore
from tests.conftest import CAT_VARIANTS, REPO_ROOT, model_version


def ranking(stdout: str) -> list[tuple[str, float]]:
    """(file, score) rows of a printed ranking table."""
    lines = stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("----")) + 1
    rows = [re.split(r"\s{2,}", line) for line in lines[start:] if line.strip()]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    return [(r[1], float(r[2])) for r in rows]


def run(
    capsys: pytest.CaptureFixture[str], command: Callable[[Sequence[str]], int], *args: str
) -> tuple[int, str, str]:
    code = command(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def forward_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of every batch the real model embeds while the test runs."""
    sizes: list[int] = []
    real_forward = Embedder.forward

    def counting_forward(self: Embedder, crops: Any) -> EmbedResult:
        sizes.append(len(crops))
        return real_forward(self, crops)

    monkeypatch.setattr(Embedder, "forward", counting_forward)
    return sizes


def stored_count(data_dir: Path) -> int:
    store = ImageStore(data_dir)
    try:
        return store.count()
    finally:
        store.close()


# --- help -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "example"),
    [(main, "python similarity_analysis.py --images_folder"), (rebuild_main, "rebuild-index --data_dir")],
)
def test_each_command_has_help_with_an_example(
    capsys: pytest.CaptureFixture[str], command: Callable[[Sequence[str]], int], example: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        command(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and example in out
    assert "--data_dir" in out


# --- ranking --------------------------------------------------------------------------------------------


def test_ranking_the_sample_images_puts_the_four_cat_variants_first(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, images_dir: Path, forward_passes: list[int]
) -> None:
    code, out, err = run(
        capsys, main, "--images_folder", str(images_dir), "--data_dir", str(tmp_path / "data"), "--top_k", "0"
    )
    assert code == 0, err
    rows = ranking(out)
    assert len(rows) == 9 and "cat.png" not in [f for f, _ in rows]
    assert {f for f, _ in rows[:4]} == CAT_VARIANTS
    assert [s for _, s in rows] == sorted((s for _, s in rows), reverse=True)
    assert rows[0][1] > 0.8 > 0.3 > rows[4][1]
    assert "Reference: cat.png   metric: cosine" in out
    assert "espresso" in out and "10 embedded, 0 already indexed" in err
    assert sum(forward_passes) == 10


def test_second_run_embeds_nothing_and_prints_the_same_ranking(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, images_dir: Path, forward_passes: list[int]
) -> None:
    args = ("--images_folder", str(images_dir), "--data_dir", str(tmp_path / "data"), "--top_k", "0")
    first = run(capsys, main, *args)
    embedded_first = sum(forward_passes)
    second = run(capsys, main, *args)
    assert first[0] == second[0] == 0
    assert embedded_first == 10 and sum(forward_passes) == 10
    assert "0 embedded, 10 already indexed" in second[2]
    assert ranking(second[1]) == ranking(first[1])


def test_a_run_restores_the_folders_images_that_are_in_the_trash_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, images_dir: Path, embedder: Embedder
) -> None:
    from index.service import ImageIndex

    args = ("--images_folder", str(images_dir), "--data_dir", str(tmp_path / "data"), "--top_k", "0")
    first = run(capsys, main, *args)
    with ImageIndex(Settings(data_dir=tmp_path / "data"), embedder) as index:
        rocket = index.resolve_ref("rocket.jpg")
        index.delete(rocket.id)
    second = run(capsys, main, *args)
    assert first[0] == second[0] == 0
    assert "0 embedded, 9 already indexed, 1 restored from the trash" in second[2]
    assert ranking(second[1]) == ranking(first[1])
    with ImageIndex(Settings(data_dir=tmp_path / "data"), embedder) as index:
        assert index.get(rocket.id).trashed_at is None


def test_euclidean_metric_ranks_by_ascending_distance(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path
) -> None:
    code, out, _ = run(
        capsys, main, "--images_folder", str(images_dir), "--data_dir", str(sample_settings.data_dir),
        "--metric", "euclidean", "--top_k", "0", "--quiet",
    )  # fmt: skip
    assert code == 0
    rows = ranking(out)
    assert "distance" in out.splitlines()[1]
    assert [s for _, s in rows] == sorted(s for _, s in rows)
    assert {f for f, _ in rows[:4]} == CAT_VARIANTS


def test_top_k_limits_the_printed_rows_and_another_reference_can_be_chosen(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path
) -> None:
    code, out, err = run(
        capsys, main, "--images_folder", str(images_dir), "--data_dir", str(sample_settings.data_dir),
        "--ref_image", str(images_dir / "cat_crop.jpg"), "--top_k", "3",
    )  # fmt: skip
    assert code == 0
    rows = ranking(out)
    assert len(rows) == 3 and rows[0][0] in CAT_VARIANTS | {"cat.png"}
    assert "Reference: cat_crop.jpg" in out
    assert "0 embedded" in err


def test_corrupt_images_in_the_folder_are_reported_and_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, images_copy: Path, truncated_jpeg: bytes
) -> None:
    (images_copy / "broken.jpg").write_bytes(truncated_jpeg)
    (images_copy / "notes.jpg").write_text("not a photo\n")
    data_dir = tmp_path / "data"
    code, out, err = run(capsys, main, "--images_folder", str(images_copy), "--data_dir", str(data_dir), "--top_k", "0")
    assert code == 0, err
    files = [f for f, _ in ranking(out)]
    assert len(files) == 9 and "broken.jpg" not in files and "notes.jpg" not in files
    assert re.search(r"^skipped broken\.jpg: .*truncated", err, re.M)
    assert re.search(r"^skipped notes\.jpg: ", err, re.M)
    assert "2 skipped" in err
    assert stored_count(data_dir) == 10


# --- errors ---------------------------------------------------------------------------------------------


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code != 0
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--images_folder", "{tmp}/no-such-folder"], ["images folder not found", "no-such-folder"]),
        (["--ref_image", "dog.png"], ["dog.png", "is not an image in"]),
        (["--ref_image", "{tmp}/elsewhere/dog.png"], ["is not an image in", "nor a file"]),
        (["--model", "resnet9000"], ["unknown model 'resnet9000'", "efficientnet_lite0"]),
        (["--model", "efficientnet_lite1"], [model_version(), model_version("efficientnet_lite1")]),
        (["--top_k", "-1"], ["--top_k"]),
    ],
    ids=["missing-folder", "reference-not-in-folder", "reference-elsewhere", "unknown-model", "other-model", "top-k"],
)
def test_bad_arguments_give_one_line_and_a_nonzero_exit_and_lose_nothing(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    sample_settings: Settings,
    images_dir: Path,
    args: list[str],
    fragments: list[str],
) -> None:
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(images_dir / "cat.png", tmp_path / "elsewhere" / "cat.png")
    argv = ["--images_folder", str(images_dir), "--data_dir", str(sample_settings.data_dir)]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert_one_line_error(*run(capsys, main, *argv), *fragments)
    assert stored_count(sample_settings.data_dir) == 10


@pytest.mark.parametrize("command", [main, rebuild_main])
def test_an_unusable_data_dir_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    images_dir: Path,
    command: Callable[[Sequence[str]], int],
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "imgsim.sqlite3").write_text("not a database")
    extra = ["--images_folder", str(images_dir)] if command is main else []
    for data_dir, fragment in [("a-file", "as the data directory"), ("broken", "not a usable imgsim database")]:
        result = run(capsys, command, "--data_dir", str(tmp_path / data_dir), *extra)
        assert_one_line_error(*result, fragment)
    assert (tmp_path / "broken" / "imgsim.sqlite3").read_text() == "not a database"


def test_a_corrupt_reference_image_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, images_copy: Path
) -> None:
    (images_copy / "notes.jpg").write_text("not a photo\n")
    result = run(
        capsys, main, "--images_folder", str(images_copy), "--data_dir", str(tmp_path / "data"),
        "--ref_image", "notes.jpg", "--quiet",
    )  # fmt: skip
    assert_one_line_error(*result, "notes.jpg")
    assert stored_count(tmp_path / "data") == 10


# --- rebuild-index --------------------------------------------------------------------------------------


def test_rebuild_index_keeps_the_ranking_and_is_safe_to_run_twice(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path
) -> None:
    data_dir = str(sample_settings.data_dir)
    rank_args = ("--images_folder", str(images_dir), "--data_dir", data_dir, "--top_k", "0", "--quiet")
    _, before, _ = run(capsys, main, *rank_args)
    for _ in range(2):
        code, out, err = run(capsys, rebuild_main, "--data_dir", data_dir)
        assert code == 0, err
        assert f"10 vectors (flat, {model_version()}); 0 re-embedded, 0 failed" in out
    _, after, _ = run(capsys, main, *rank_args)
    assert ranking(after) == ranking(before)


def test_rebuild_index_reembed_recomputes_every_image_with_a_progress_bar(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path, forward_passes: list[int]
) -> None:
    code, out, err = run(capsys, rebuild_main, "--data_dir", str(sample_settings.data_dir), "--reembed")
    assert code == 0, err
    assert "10 re-embedded, 0 failed" in out
    assert sum(forward_passes) == 10
    assert "re-embedding" in err and "10/10" in err
    code, out, err = run(capsys, rebuild_main, "--data_dir", str(sample_settings.data_dir), "--reembed", "--quiet")
    assert code == 0 and "10 re-embedded" in out and "re-embedding" not in err


def test_after_a_rebuild_with_another_definition_the_commands_use_the_recorded_one(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path
) -> None:
    data_dir = str(sample_settings.data_dir)
    code, out, err = run(capsys, rebuild_main, "--data_dir", data_dir, "--embedding", "mean", "--reembed", "--quiet")
    assert code == 0, err
    assert "(flat, efficientnet_lite0:mean); 10 re-embedded" in out
    rank_args = ("--images_folder", str(images_dir), "--data_dir", data_dir, "--top_k", "0", "--quiet")
    code, out, err = run(capsys, main, *rank_args)
    assert code == 0, err
    assert {f for f, _ in ranking(out)[:4]} == CAT_VARIANTS
    # rebuild-index without --embedding keeps the recorded definition instead of re-embedding to the default.
    code, out, err = run(capsys, rebuild_main, "--data_dir", data_dir)
    assert code == 0, err
    assert "(flat, efficientnet_lite0:mean); 0 re-embedded" in out
    # An explicit definition that differs is still refused, naming both.
    result = run(capsys, main, *rank_args, "--embedding", "gem")
    assert_one_line_error(*result, "efficientnet_lite0:mean", "efficientnet_lite0:gem")


def test_rebuild_index_with_an_unknown_model_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings
) -> None:
    result = run(capsys, rebuild_main, "--data_dir", str(sample_settings.data_dir), "--model", "nope")
    assert_one_line_error(*result, "unknown model 'nope'")
    assert stored_count(sample_settings.data_dir) == 10


# --- the root entry point, the console scripts and the module forms -------------------------------------

COMMANDS = [
    ("similarity-analysis", "client.cli"),
    ("rebuild-index", "client.rebuild"),
    ("find-duplicates", "client.duplicates"),
    ("batch-ingest", "client.batch_ingest"),
]


@pytest.mark.parametrize(("script", "module"), COMMANDS)
def test_each_command_is_installed_has_a_python_m_form_and_tells_its_version(script: str, module: str) -> None:
    from index import __version__

    installed = Path(sys.executable).parent / script
    assert installed.is_file(), f"{script} is not installed beside {sys.executable}"
    for command in ([str(installed)], [sys.executable, "-m", module]):
        done = subprocess.run([*command, "--version"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(f"(imgsim {__version__})"), done.stdout
        helped = subprocess.run([*command, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert helped.returncode == 0 and "example:" in helped.stdout


def test_root_script_ranks_the_sample_folder_by_default(sample_settings: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "similarity_analysis.py", "--data_dir", str(sample_settings.data_dir), "--top_k", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert {f for f, _ in ranking(done.stdout)[:4]} == CAT_VARIANTS
    assert "0 embedded, 10 already indexed" in done.stderr


def test_root_script_exits_nonzero_with_one_line_for_a_missing_folder(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "similarity_analysis.py", "--images_folder", str(tmp_path / "nowhere")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(done.returncode, done.stdout, done.stderr, "images folder not found")
    assert "Traceback" not in done.stderr


def test_a_cold_root_script_run_prints_everything_and_persists_before_its_fast_exit(tmp_path: Path) -> None:
    command = [sys.executable, "similarity_analysis.py", "--data_dir", str(tmp_path / "data"), "--top_k", "0"]
    cold = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert cold.returncode == 0, cold.stderr
    assert len(ranking(cold.stdout)) == 9
    assert "10 embedded, 0 already indexed" in cold.stderr
    # The FAISS file was saved before the process left: reopening finds it complete, nothing to repair.
    warm = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert warm.returncode == 0, warm.stderr
    assert ranking(warm.stdout) == ranking(cold.stdout)
    assert "0 embedded, 10 already indexed" in warm.stderr
    assert "WARNING" not in warm.stderr


@pytest.mark.slow
def test_a_rerun_over_a_folder_holding_a_truncated_jpeg_exits_cleanly(
    tmp_path: Path, images_copy: Path, truncated_jpeg: bytes
) -> None:
    (images_copy / "broken.jpg").write_bytes(truncated_jpeg)
    command = [sys.executable, "similarity_analysis.py", "--images_folder", str(images_copy), "--quiet"]
    command += ["--data_dir", str(tmp_path / "data")]
    env = {**os.environ, "IMGSIM_ENGINE": "onnxruntime"}
    for _ in range(4):
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(ranking(done.stdout)) == 9 and "terminate called" not in done.stderr


# --- scriptable outputs ---------------------------------------------------------------------------------


def _sample_args(settings: Settings, images_dir: Path, *extra: str) -> list[str]:
    return ["--images_folder", str(images_dir), "--data_dir", str(settings.data_dir), "--quiet", *extra]


def test_json_output_has_the_reference_predictions_and_every_ranked_image(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path
) -> None:
    code, out, err = run(capsys, main, *_sample_args(sample_settings, images_dir, "--json", "--top_k", "0"))
    assert code == 0, err
    report = json.loads(out)
    assert report["reference"] == "cat.png" and report["metric"] == "cosine"
    assert report["reference_predictions"] and "cat" in report["reference_predictions"][0]["label"]
    rows = report["results"]
    assert [r["rank"] for r in rows] == list(range(1, 10))
    assert {r["file"] for r in rows[:4]} == CAT_VARIANTS
    assert all(Path(r["path"]).is_file() for r in rows)
    assert all(p["score"] >= 0.01 for r in rows for p in r["predictions"])


def test_csv_output_has_a_header_and_one_row_per_image(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path
) -> None:
    code, out, _ = run(capsys, main, *_sample_args(sample_settings, images_dir, "--csv", "--top_k", "3"))
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 3 and rows[0]["reference"] == "cat.png"
    assert {r["file"] for r in rows} <= CAT_VARIANTS
    assert float(rows[0]["cosine"]) >= float(rows[2]["cosine"])


def test_html_contact_sheet_holds_the_reference_and_its_top_k_inline(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path, tmp_path: Path
) -> None:
    sheet = tmp_path / "sheet.html"
    code, out, _ = run(capsys, main, *_sample_args(sample_settings, images_dir, "--html", str(sheet), "--top_k", "4"))
    assert code == 0 and "Reference: cat.png" in out
    page = sheet.read_text()
    assert page.count('src="data:image/jpeg;base64,') == 5
    assert "reference" in page and "cat_mirror.png" in page and "similarity" in page
    assert "http" not in page.replace("http-equiv", "")


def test_the_reference_predictions_are_printed_and_tiny_ones_never(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path
) -> None:
    code, out, _ = run(capsys, main, *_sample_args(sample_settings, images_dir, "--top_k", "0"))
    assert code == 0
    assert re.search(r"^Reference: cat.png   metric: cosine   predicted: .*cat \d+%", out, re.M)
    assert not re.search(r"\b0%", out)


def test_a_reference_outside_the_folder_is_indexed_and_ranked_against(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "query.jpg").write_bytes((images_dir / "coffee.jpg").read_bytes())
    args = _sample_args(sample_settings, images_dir, "--ref_image", str(elsewhere / "query.jpg"), "--top_k", "0")
    code, out, err = run(capsys, main, *args)
    assert code == 0, err
    rows = ranking(out)
    assert "Reference: query.jpg" in out and len(rows) == 10
    assert rows[0] == ("coffee.jpg", pytest.approx(1.0, abs=1e-4))


def test_recursive_ranks_images_in_subfolders_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, images_copy: Path, sample_settings: Settings
) -> None:
    (images_copy / "more").mkdir()
    shutil.move(images_copy / "cat_grey.png", images_copy / "more" / "cat_grey.png")
    base = ["--images_folder", str(images_copy), "--data_dir", str(sample_settings.data_dir), "--top_k", "0"]
    flat = [f for f, _ in ranking(run(capsys, main, *base)[1])]
    deep = [f for f, _ in ranking(run(capsys, main, *base, "--recursive")[1])]
    assert "cat_grey.png" not in flat and len(flat) == 8
    assert str(Path("more") / "cat_grey.png") in deep and len(deep) == 9


def test_a_row_printed_with_recursive_is_accepted_back_as_the_reference(
    capsys: pytest.CaptureFixture[str], images_copy: Path, sample_settings: Settings
) -> None:
    (images_copy / "more").mkdir()
    shutil.move(images_copy / "cat_grey.png", images_copy / "more" / "cat_grey.png")
    base = ["--images_folder", str(images_copy), "--data_dir", str(sample_settings.data_dir), "--top_k", "0"]
    shown = str(Path("more") / "cat_grey.png")
    assert shown in [f for f, _ in ranking(run(capsys, main, *base, "--recursive")[1])]
    code, out, err = run(capsys, main, *base, "--recursive", "--ref_image", shown)
    assert code == 0, err
    rows = ranking(out)
    assert "Reference: cat_grey.png" in out and shown not in [f for f, _ in rows]
    assert {f for f, _ in rows[:4]} == (CAT_VARIANTS - {"cat_grey.png"}) | {"cat.png"}


def test_label_keeps_the_images_predicted_as_that_class(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path
) -> None:
    code, out, _ = run(capsys, main, *_sample_args(sample_settings, images_dir, "--label", "espresso", "--top_k", "0"))
    assert code == 0
    assert [f for f, _ in ranking(out)] == ["coffee.jpg"]
    code, out, err = run(capsys, main, *_sample_args(sample_settings, images_dir, "--label", "unicorn"))
    assert_one_line_error(code, out, err, "unicorn")


def test_label_takes_a_word_naming_many_classes(
    capsys: pytest.CaptureFixture[str], sample_settings: Settings, images_dir: Path
) -> None:
    code, out, err = run(capsys, main, *_sample_args(sample_settings, images_dir, "--label", "cat", "--top_k", "0"))
    assert code == 0, err
    assert {f for f, _ in ranking(out)} == CAT_VARIANTS  # cat.png is the reference
    code, out, err = run(capsys, main, *_sample_args(sample_settings, images_dir, "--label", "dog", "--top_k", "0"))
    assert code == 0, err
    assert ranking(out) == []  # no sample photo shows a dog
    code, out, err = run(capsys, main, *_sample_args(sample_settings, images_dir, "--label", "dgo"))
    assert_one_line_error(code, out, err, "'dog'")

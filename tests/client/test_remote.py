"""The CLI's remote mode against a real service process: the same output as local mode."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.cli import main
from client.remote import chunk_files, rank_folder_remote
from index.errors import InvalidArgument
from tests.app.server import free_port, running_server
from tests.conftest import encode_image


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One service for the module, with a small per-request file limit so uploads come in several chunks."""
    tmp = tmp_path_factory.mktemp("remote")
    with running_server(tmp / "data", tmp / "server.log", IMGSIM_MAX_FILES_PER_REQUEST="4") as url:
        yield url


@pytest.fixture
def folder(images_copy: Path) -> Path:
    return images_copy


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_remote_mode_prints_the_same_table_as_local_mode(
    api_url: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--images_folder", str(folder), "--ref_image", "cat.png", "--top_k", "0", "--quiet"]
    local = _run(capsys, *common, "--data_dir", str(tmp_path / "local"))
    remote = _run(capsys, *common, "--api_url", api_url)
    assert local[0] == remote[0] == 0
    assert remote[1] == local[1]
    assert remote[1].splitlines()[3].split()[1] in {"cat_mirror.png", "cat_crop.jpg"}
    assert len(remote[1].splitlines()) == 3 + 9


@pytest.mark.parametrize("metric", ["euclidean", "dot"])
def test_remote_mode_ranks_with_every_metric_like_local_mode(
    api_url: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], metric: str
) -> None:
    common = ["--images_folder", str(folder), "--ref_image", "coffee.jpg", "--metric", metric, "--quiet"]
    local = _run(capsys, *common, "--data_dir", str(tmp_path / "local"))
    remote = _run(capsys, *common, "--api_url", api_url)
    assert remote[1] == local[1]


def test_a_broken_file_is_skipped_and_reported_like_local_mode(
    api_url: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "new.png").write_bytes(encode_image("PNG", seed=42))
    common = ["--images_folder", str(folder), "--ref_image", "cat.png", "--top_k", "0"]
    local = _run(capsys, *common, "--data_dir", str(tmp_path / "local"))
    remote = _run(capsys, *common, "--api_url", api_url)
    assert remote[0] == local[0] == 0
    assert remote[1] == local[1]
    assert "new.png" in remote[1] and "broken.jpg" not in remote[1]
    skipped = [line for line in remote[2].splitlines() if line.startswith("skipped")]
    assert skipped == [line for line in local[2].splitlines() if line.startswith("skipped")]
    assert skipped == ["skipped broken.jpg: not a recognised image"]


def test_reuploading_reports_everything_as_already_indexed(api_url: str, folder: Path) -> None:
    rank_folder_remote(api_url, folder, Path("cat.png"), "cosine", show_progress=False)
    report = rank_folder_remote(api_url, folder, Path("cat.png"), "cosine", show_progress=False)
    assert (report.added, report.existing) == (0, 10)


def test_a_missing_reference_is_one_error_line(api_url: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--images_folder", str(folder), "--ref_image", "nope.png", "--api_url", api_url)
    assert code == 1
    assert out == ""
    assert err.strip().splitlines() == [f"error: reference image nope.png is not an image in {folder}, nor a file"]


def test_a_reference_outside_the_folder_is_uploaded_and_gives_the_local_output(
    api_url: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside" / "query.png"
    outside.parent.mkdir()
    outside.write_bytes((folder / "cat_crop.jpg").read_bytes())
    args = ("--images_folder", str(folder), "--ref_image", str(outside), "--top_k", "0", "--quiet", "--json")
    code, out, err = _run(capsys, *args, "--api_url", api_url)
    assert code == 0, err
    remote = json.loads(out)
    local = json.loads(_run(capsys, *args, "--data_dir", str(tmp_path / "local"))[1])
    assert remote["reference"] == "query.png" and len(remote["results"]) == 10
    assert remote["results"][0]["file"] == "cat_crop.jpg"
    assert [r["file"] for r in remote["results"]] == [r["file"] for r in local["results"]]
    assert remote["reference_predictions"] == local["reference_predictions"]


def test_an_unreadable_reference_is_an_error(api_url: str, folder: Path) -> None:
    (folder / "cat.png").write_bytes(b"broken")
    with pytest.raises(InvalidArgument, match=r"reference image cat\.png: not a recognised image"):
        rank_folder_remote(api_url, folder, Path("cat.png"), "cosine", show_progress=False)


def test_an_unreachable_api_is_one_error_line(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _out, err = _run(capsys, "--images_folder", str(folder), "--api_url", url)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: cannot reach the API at {url}")


def test_files_are_packed_into_requests_within_both_limits(tmp_path: Path) -> None:
    sizes = [100, 5000, 200, 300, 9000, 50]
    paths = []
    for n, size in enumerate(sizes):
        path = tmp_path / f"{n}.bin"
        path.write_bytes(b"x" * size)
        paths.append(path)
    chunks = list(chunk_files(paths, max_files=2, max_bytes=10_000))
    assert [[p.name for p in c] for c, _ in chunks] == [["0.bin", "1.bin"], ["2.bin", "3.bin"], ["5.bin"]]
    assert [(p.name, "larger" in why) for _, big in chunks for p, why in big] == [("4.bin", True)]


def test_remote_mode_sends_the_api_key_and_a_missing_key_is_one_line(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = "reader-key:read,writer-key:write"
    with running_server(tmp_path / "data", tmp_path / "server.log", IMGSIM_API_KEYS=keys) as url:
        common = ["--api_url", url, "--images_folder", str(folder), "--quiet"]
        code, _out, err = _run(capsys, *common)
        assert code == 1 and err.count("\n") == 1 and "401" in err and "API key" in err
        code, _out, err = _run(capsys, *common, "--api_key", "reader-key")
        assert code == 1 and "403" in err
        monkeypatch.setenv("IMGSIM_API_KEY", "writer-key")
        code, out, _err = _run(capsys, *common)
        assert code == 0 and "cat_mirror.png" in out


def test_a_row_printed_with_recursive_is_accepted_back_as_the_reference_in_remote_mode_too(
    api_url: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "more").mkdir()
    shutil.move(folder / "cat_grey.png", folder / "more" / "cat_grey.png")
    base = ["--images_folder", str(folder), "--top_k", "0", "--quiet", "--recursive", "--api_url", api_url]
    shown = str(Path("more") / "cat_grey.png")
    code, out, err = _run(capsys, *base)
    assert code == 0, err
    assert shown in [line.split()[1] for line in out.splitlines()[3:]]
    code, out, err = _run(capsys, *base, "--ref_image", shown)
    assert code == 0, err
    assert "Reference: cat_grey.png" in out
    local = _run(capsys, *base[:-2], "--ref_image", shown, "--data_dir", str(tmp_path / "local"))
    assert local[1] == out

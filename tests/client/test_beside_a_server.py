"""The commands beside a running API on the same data directory, on SQLite + FAISS and on PostgreSQL + Milvus.

`find-duplicates` goes through the API (uploading only what the server lacks, grouping with POST
/duplicates/among), prints the same as on the index itself, moves and puts back the local files, and refuses
bad input in one line before uploading anything. `rebuild-index` refuses in one line naming the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from client.cli import rebuild_main
from client.duplicates import main
from tests.app.server import running_server
from tests.client.test_cli import assert_one_line_error, run
from tests.conftest import BACKENDS, backend_overrides, duplicates_folder


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The grouping reads the store: run on both configurations."""
    return str(request.param)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Distinct photos, two edited copies of the astronaut, a byte copy of the coffee in a subfolder."""
    return duplicates_folder(tmp_path / "photos", ("astronaut.jpg", "coffee.jpg", "rocket.jpg", "camera.jpg"))


def use_data_dir(monkeypatch: pytest.MonkeyPatch, backend: str, where: Path) -> dict[str, str]:
    """Point IMGSIM_* at a fresh data directory `where / "data"` on `backend`; the variables."""
    variables = {f"IMGSIM_{k.upper()}": str(v) for k, v in backend_overrides(backend, where).items()}
    variables["IMGSIM_DATA_DIR"] = str(where / "data")
    for name in ("IMGSIM_DATABASE_URL", "IMGSIM_VECTOR_STORE", "IMGSIM_MILVUS_URI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


@pytest.fixture
def api(tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A real server on a fresh data directory that the environment names; its URL and its log."""
    served = tmp_path / "served"
    served.mkdir()
    env = use_data_dir(monkeypatch, backend, served)
    log = tmp_path / "server.log"
    with running_server(served / "data", log, **env) as url:
        yield url, log


OUTPUTS = (["--json"], ["--csv"], [], ["--level", "exact", "--json"], ["--threshold", "0.8", "--csv"])


def outputs(capsys: pytest.CaptureFixture[str], folder: Path, report: Path) -> list[tuple[str, str]]:
    """What each output option prints for the folder (recursive), and the HTML report; stderr checked empty
    of errors."""
    seen = []
    for extra in OUTPUTS:
        code, out, err = run(capsys, main, "--images_folder", str(folder), "--recursive", "--quiet", *extra)
        assert code == 0 and "error" not in err, err
        seen.append((" ".join(extra), out))
    code, _, err = run(capsys, main, "--images_folder", str(folder), "--recursive", "--quiet", "--html", str(report))
    assert code == 0, err
    seen.append(("--html", report.read_text()))
    return seen


def ingest_requests(log: Path) -> int:
    return log.read_text().count('"POST /ingest HTTP/1.1" 200')


def test_through_a_running_api_it_prints_the_same_as_on_the_index_itself(
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    tmp_path: Path,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    api: tuple[str, Path],
) -> None:
    url, log = api
    served = tmp_path / "served" / "data"
    code, _, err = run(capsys, main, "--images_folder", str(folder), "--quiet", "--json")
    assert code == 0 and err.splitlines() == [f"{served} is served by the API at {url}: using it"], err
    uploads = ingest_requests(log)
    assert uploads >= 1 and "POST /duplicates/among" in log.read_text()
    through_api = outputs(capsys, folder, tmp_path / "api.html")
    assert ingest_requests(log) == uploads  # the server already had every file: nothing uploaded again
    assert httpx.get(f"{url}/stats").json()["count"] == 6  # the byte copy of the coffee is one image

    local = tmp_path / "local"
    local.mkdir()
    use_data_dir(monkeypatch, backend, local)
    on_the_index = outputs(capsys, folder, tmp_path / "local.html")
    assert on_the_index == through_api
    json_groups = dict(on_the_index)["--json"]
    assert '"astronaut_mirror.jpg"' in json_groups and str(folder / "sub" / "coffee.jpg") in json_groups


def test_api_url_is_used_when_given_and_move_to_and_undo_move_the_local_files(
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    tmp_path: Path,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    api: tuple[str, Path],
) -> None:
    url, log = api
    use_data_dir(monkeypatch, backend, tmp_path / "elsewhere")  # the data directory no server holds
    target = tmp_path / "moved"
    args = ["--images_folder", str(folder), "--quiet", "--api_url", url, "--move-to", str(target)]
    code, out, err = run(capsys, main, *args)
    assert code == 0, err
    assert "POST /duplicates/among" in log.read_text() and httpx.get(f"{url}/stats").json()["count"] == 6
    assert sorted(p.name for p in target.glob("*.jpg")) == ["astronaut_mirror.jpg", "astronaut_small.jpg"]
    assert not (folder / "astronaut_small.jpg").exists() and (folder / "astronaut.jpg").exists()
    (manifest,) = target.glob("find-duplicates-*.json")
    assert f"find-duplicates --undo {manifest} puts them back" in out
    code, out, err = run(capsys, main, "--undo", str(manifest))
    assert code == 0, err
    assert (folder / "astronaut_small.jpg").exists() and not list(target.glob("*.jpg"))


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--level", "close"], "unknown level 'close'"),
        (["--threshold", "0.2"], "threshold must be between"),
        (["--level", "near", "--threshold", "0.9"], "not both"),
        (["--level", "similar", "--move-to", "MOVED"], "moves only proven copies"),
    ],
)
def test_bad_input_through_the_api_is_one_line_exit_1_and_uploads_nothing(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path, api: tuple[str, Path], extra: list[str], says: str
) -> None:
    url, log = api
    extra = [str(tmp_path / "moved") if e == "MOVED" else e for e in extra]
    code, out, err = run(capsys, main, "--images_folder", str(folder), "--quiet", *extra)
    # The line that says the API is used comes first; then the error, alone.
    assert err.startswith(f"{tmp_path / 'served' / 'data'} is served by the API at {url}: using it\n")
    assert code == 1
    assert_one_line_error(code, out, err.split("\n", 1)[1], says)
    assert ingest_requests(log) == 0 and httpx.get(f"{url}/stats").json()["count"] == 0
    assert not (tmp_path / "moved").exists()


def test_an_api_that_cannot_be_reached_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path
) -> None:
    code, out, err = run(
        capsys,
        main,
        "--images_folder",
        str(folder),
        "--data_dir",
        str(tmp_path / "d"),
        "--api_url",
        "http://127.0.0.1:9",
    )
    assert_one_line_error(code, out, err, "cannot reach the API at http://127.0.0.1:9")
    assert code == 1


def test_rebuild_index_beside_a_running_api_is_one_line_saying_to_stop_that_server_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path, api: tuple[str, Path]
) -> None:
    url, _log = api
    assert run(capsys, main, "--images_folder", str(folder), "--quiet")[0] == 0
    before = httpx.get(f"{url}/stats").json()
    code, out, err = run(capsys, rebuild_main, "--quiet", "--reembed")
    server = f"is served by the imgsim API server at {url} (pid "
    assert_one_line_error(code, out, err, server, "stop that server first")
    assert code == 1 and "--api_url" not in err
    assert httpx.get(f"{url}/stats").json() == before
    assert httpx.get(f"{url}/search", params={"ref": "astronaut.jpg", "k": 1}).status_code == 200

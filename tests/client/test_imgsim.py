"""The `imgsim` command: every subcommand on SQLite + FAISS and on PostgreSQL + Milvus, on the index itself
and through a running API (started by `imgsim serve`), and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.imgsim import main
from index.storage.lock import serving_url
from tests.app.server import running_server
from tests.client.test_cli import ranking
from tests.conftest import BACKENDS, CAT_VARIANTS, IMAGES_DIR, REPO_ROOT, backend_overrides

IMGSIM_SERVE = ("-m", "client.imgsim", "serve")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every subcommand reads or changes the store: run on both configurations."""
    return str(request.param)


@pytest.fixture
def env(tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The IMGSIM_* variables that put the data directory on `backend` (set for this process too)."""
    variables = {f"IMGSIM_{k.upper()}": str(v) for k, v in backend_overrides(backend, tmp_path).items()}
    variables["IMGSIM_DATA_DIR"] = str(tmp_path / "data")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


@pytest.fixture
def photos(env: dict[str, str], images_copy: Path) -> Path:
    """The sample photos, copied and ingested from that folder (with their paths) by another process, which
    leaves nothing open here (milvus-lite keeps its file locked by the process that opened it); the folder."""
    command = [sys.executable, "similarity_analysis.py", "--images_folder", str(images_copy), "--quiet"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return images_copy


@pytest.fixture
def api(tmp_path: Path, env: dict[str, str], photos: Path) -> Iterator[str]:
    """`imgsim serve` on the photos' data directory; its URL."""
    with running_server(Path(env["IMGSIM_DATA_DIR"]), tmp_path / "server.log", command=IMGSIM_SERVE, **env) as url:
        yield url


def imgsim(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(stderr: str) -> str:
    """The one error line a failed run prints (last; pymilvus may log warnings of its own before it)."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and stderr.endswith(errors[0] + "\n"), stderr
    return errors[0]


def check_every_subcommand(capsys: pytest.CaptureFixture[str], photos: Path) -> dict[str, str]:
    """Run each subcommand over the ingested photos, checking what it prints; their outputs, by subcommand."""
    outputs: dict[str, str] = {}
    code, out, err = imgsim(capsys, "search", str(IMAGES_DIR / "cat_crop.jpg"), "--top_k", "5")
    assert code == 0, err
    rows = ranking(out)
    assert rows[0][0] == "cat_crop.jpg" and {f for f, _ in rows[1:5]} == CAT_VARIANTS - {"cat_crop.jpg"} | {"cat.png"}
    outputs["search"] = out
    code, out, err = imgsim(capsys, "search", "--ref", "cat.png", "--top_k", "4", "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["reference"] == "cat.png" and {r["file"] for r in body["results"]} == CAT_VARIANTS
    outputs["search --ref"] = json.dumps([(r["file"], r["score"]) for r in body["results"]])
    code, out, _ = imgsim(capsys, "search", "--ref", "coffee.jpg", "--csv", "--label", "espresso")
    assert code == 0 and out.splitlines()[0].startswith("rank,file,path,cosine")
    outputs["csv"] = "\n".join(line.split(",")[1] for line in out.splitlines())

    code, out, _ = imgsim(capsys, "list", "--json", "--limit", "3", "--offset", "1")
    listing = json.loads(out)
    assert code == 0 and listing["total"] == 10 and [i["id"] for i in listing["items"]] == [2, 3, 4]
    outputs["list"] = out
    code, out, _ = imgsim(capsys, "list")
    assert code == 0 and len(out.splitlines()) == 2 + 10 and "cat_grey.png" in out

    code, out, _ = imgsim(capsys, "remove", "cat_grey.png")
    assert code == 0 and out.startswith("moved image ") and "cat_grey.png) to the trash; `imgsim restore " in out
    grey = int(out.split()[2])
    assert "cat_grey.png" not in imgsim(capsys, "list")[1]
    code, out, err = imgsim(capsys, "remove", "cat_grey.png")
    assert (code, out) == (1, "") and "in the trash" in error_line(err)
    code, out, _ = imgsim(capsys, "restore", str(grey))
    assert code == 0 and out.strip() == f"restored image {grey} (cat_grey.png) from the trash"

    (photos / "coffee.jpg").unlink()
    code, out, _ = imgsim(capsys, "prune", "--dry-run")
    assert code == 0 and f"would move image 8 (coffee.jpg) to the trash: {photos / 'coffee.jpg'} gone" in out
    assert "nothing was moved" in out and json.loads(imgsim(capsys, "stats", "--json")[1])["trashed"] == 0
    code, out, _ = imgsim(capsys, "prune")
    assert code == 0 and out.splitlines()[-1].startswith("1 image moved to the trash")
    assert imgsim(capsys, "prune")[1].startswith("nothing to prune")

    code, out, _ = imgsim(capsys, "stats")
    assert code == 0 and out.splitlines()[:2] == ["images        9", "in the trash  1 (kept 30 days)"]
    outputs["stats"] = "\n".join(out.splitlines()[:-1])  # the last line says where: the data dir or the API
    return outputs


def test_every_subcommand_works_on_the_index_itself(
    capsys: pytest.CaptureFixture[str], photos: Path, env: dict[str, str]
) -> None:
    check_every_subcommand(capsys, photos)
    assert imgsim(capsys, "stats")[1].splitlines()[-1] == f"data dir      {env['IMGSIM_DATA_DIR']}"


def test_every_subcommand_goes_through_a_running_api_and_prints_the_same(
    capsys: pytest.CaptureFixture[str], photos: Path, env: dict[str, str], api: str, tmp_path: Path
) -> None:
    data_dir = Path(env["IMGSIM_DATA_DIR"])
    assert serving_url(data_dir) == api  # `imgsim serve` records its address beside the lock
    check_every_subcommand(capsys, photos)
    _code, out, err = imgsim(capsys, "stats")
    assert out.splitlines()[-1] == f"api           {api}"
    assert err.strip() == f"{data_dir} is served by the API at {api}: using it"
    assert "POST /images/prune" in (tmp_path / "server.log").read_text()
    # A second `serve` on the same data directory is refused in one line.
    assert imgsim(capsys, "serve")[0] == 1


def test_bad_input_is_one_line_and_exit_1_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path
) -> None:
    cases = [
        (("search", str(photos)), f"error: {photos} is a folder; give an image file"),
        (("search", str(tmp_path / "nope.jpg")), f"error: no such file: {tmp_path / 'nope.jpg'}"),
        (("search", "--ref", "nope.png"), "error: no stored image matches 'nope.png'"),
        (("search",), "error: give an IMAGE file or --ref ID_OR_NAME"),
        (("search", "--ref", "cat.png", "--top_k", "0"), "error: --top_k must be between 1 and 1000"),
        (("search", "--ref", "cat.png", "--label", "no such class"), "error: no ImageNet class is called"),
        (("search", "--ref", "cat.png", "--top_k", "many"), "error: argument --top_k: invalid int value"),
        (("remove", "999"), "error: no stored image matches '999'"),
        (("restore", "1"), "error: image 1 (astronaut.jpg) is not in the trash"),
        (("list", "--limit", "0"), "error: --limit must be between 1 and 1000"),
        (("list", "--bogus"), "error: unrecognized arguments: --bogus"),
        (("frobnicate",), "error: argument COMMAND: invalid choice: 'frobnicate'"),
    ]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    cases.append((("search", str(tmp_path / "broken.jpg")), "error: broken.jpg: not a recognised image"))
    for argv, message in cases:
        code, out, err = imgsim(capsys, *argv)
        assert (code, out) == (1, ""), argv
        assert error_line(err).startswith(message), (argv, err)
    assert json.loads(imgsim(capsys, "stats", "--json")[1])["count"] == 10


def test_the_module_form_tells_its_version_and_each_subcommand_has_help_with_an_example() -> None:
    from index import __version__

    command = [sys.executable, "-m", "client.imgsim"]
    done = subprocess.run([*command, "--version"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"imgsim (imgsim {__version__})"
    for sub in ("", "search", "list", "remove", "restore", "prune", "stats", "serve"):
        helped = subprocess.run(
            [*command, *sub.split(), "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )
        assert helped.returncode == 0 and "example:\n  imgsim " in helped.stdout, sub

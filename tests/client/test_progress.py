"""What the commands say while the model is prepared for this machine: a notice with the expected wait on the
first run, a bar for the steps of an export, and nothing on later runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.cli import main
from index.model.engines import installed_engines
from tests.client.test_cli import ranking, run

NOTICE = "preparing the model for this machine (once, about"


@pytest.mark.skipif("openvino" not in installed_engines(), reason="openvino is not installed")
def test_the_first_run_says_the_model_is_compiled_for_this_machine_and_later_runs_do_not(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, images_dir: Path
) -> None:
    monkeypatch.setenv("IMGSIM_MODEL_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("IMGSIM_ENGINE", "openvino")
    args = ("--images_folder", str(images_dir), "--data_dir", str(tmp_path / "data"), "--quiet")
    code, out, err = run(capsys, main, *args)
    assert code == 0, err
    assert [line for line in err.splitlines() if NOTICE in line] == [
        next(line for line in err.splitlines() if line.startswith(NOTICE) and "OpenVINO compiles" in line)
    ]
    assert len(ranking(out)) == 9
    code, again_out, again_err = run(capsys, main, *args)
    assert code == 0 and NOTICE not in again_err
    assert ranking(again_out) == ranking(out)


def test_an_export_is_announced_with_its_wait_and_its_steps_drawn_as_a_bar(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, images_dir: Path
) -> None:
    monkeypatch.setenv("IMGSIM_MODEL_CACHE_DIR", str(tmp_path / "empty-cache"))
    args = ("--images_folder", str(images_dir), "--data_dir", str(tmp_path / "data"), "--embedding", "mean")
    code, out, err = run(capsys, main, *args)
    assert code == 0, err
    assert f"{NOTICE} 15 s): fp32 export of efficientnet_lite0 (mean)" in err
    assert "tracing the graph" in err and "2/2" in err
    assert len(ranking(out)) == 9

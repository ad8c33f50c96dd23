"""The `batch-ingest` command: help with an example, and one clear line for a folder that is not there."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.batch_ingest import main


def test_batch_ingest_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and "python -m client.batch_ingest /photos --workers 2" in out
    assert "--workers" in out and "--address" in out


def test_a_missing_folder_is_one_line_on_stderr_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(tmp_path / "nowhere"), "--data_dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"batch-ingest: error: images folder not found: {tmp_path / 'nowhere'}"
    assert not (tmp_path / "data").exists()

"""Inference engines: chosen from the settings, exported once, and giving torch fp32's vectors and classes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from index.config import Settings
from index.errors import EngineUnavailable
from index.model.embedder import Embedder, EmbedResult
from index.model.engines import PREFERENCE, choose_engine, installed_engines
from index.model.imaging import decode_for_model
from tests.conftest import IMAGES_DIR, REPO_ROOT, SettingsFactory

EXPORTED = [name for name in installed_engines() if name != "torch"]
exported_engines = pytest.mark.parametrize("engine", EXPORTED)


def crops_of(embedder: Embedder, files: list[Path]) -> NDArray[np.uint8]:
    crops = [decode_for_model(f.read_bytes(), embedder.preprocessing, 10**9).crop for f in files]
    return np.stack([np.asarray(c) for c in crops])


@pytest.fixture(scope="session")
def torch_fp32() -> Embedder:
    return Embedder(Settings(engine="torch", precision="fp32")).load()


@pytest.fixture(scope="session")
def agreement_photos() -> list[Path]:
    """The sample photos, and every 20th shared ImageNet photo where the shared data set is present."""
    from tests.conftest import IMAGENET_SAMPLE_DIR

    files = sorted(p for p in IMAGES_DIR.iterdir() if p.suffix != ".md")
    return files + sorted(IMAGENET_SAMPLE_DIR.glob("*.JPEG"))[::20]


def embed_all(embedder: Embedder, files: list[Path]) -> EmbedResult:
    parts = [embedder.forward(crops_of(embedder, files[i : i + 32])) for i in range(0, len(files), 32)]
    return EmbedResult(np.concatenate([p.embeddings for p in parts]), [pred for p in parts for pred in p.predictions])


@exported_engines
def test_each_exported_engine_in_fp32_gives_torch_fp32s_vectors_and_classes(
    engine: str, torch_fp32: Embedder, agreement_photos: list[Path]
) -> None:
    other = Embedder(Settings(engine=engine, precision="fp32")).load()
    assert (other.engine.name, str(other.dtype)) == (engine, "float32")
    want, got = embed_all(torch_fp32, agreement_photos), embed_all(other, agreement_photos)
    cosines = np.sum(want.embeddings * got.embeddings, axis=1)
    assert cosines.min() >= 0.9999
    same_top1 = [w[0].class_index == g[0].class_index for w, g in zip(want.predictions, got.predictions, strict=True)]
    assert np.mean(same_top1) >= 0.995
    scores = np.array([[p.score for p in g] for g in got.predictions])
    np.testing.assert_allclose(scores, [[p.score for p in w] for w in want.predictions], atol=1e-3)


def test_auto_picks_the_fastest_installed_engine_for_the_cpu() -> None:
    expected = next(name for name in PREFERENCE["cpu"] if name in installed_engines())
    assert choose_engine(Settings(device="cpu")) == expected
    assert Embedder(Settings(device="cpu")).engine.name == expected


@exported_engines
def test_an_exported_engine_refuses_a_cuda_device(engine: str) -> None:
    with pytest.raises(EngineUnavailable, match="cuda"):
        choose_engine(Settings(engine=engine, device="cuda"))


def test_int8_is_refused_by_torch_and_auto_skips_torch_for_it() -> None:
    with pytest.raises(EngineUnavailable, match="int8"):
        Embedder(Settings(engine="torch", precision="int8")).load()
    if EXPORTED:
        assert choose_engine(Settings(device="cpu", precision="int8")) != "torch"


@pytest.mark.skipif("onnxruntime" not in EXPORTED, reason="onnxruntime is not installed")
def test_onnxruntime_refuses_bf16_with_a_clear_error() -> None:
    with pytest.raises(EngineUnavailable, match="fp32, int8"):
        Embedder(Settings(engine="onnxruntime", precision="bf16")).load()


@exported_engines
def test_the_export_is_made_once_and_reused_from_the_cache(
    engine: str, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    cache = tmp_path / "models"
    first = Embedder(make_settings(engine=engine, model_cache_dir=cache)).load()
    exported = sorted(cache.glob("*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    again = Embedder(make_settings(engine=engine, model_cache_dir=cache)).load()
    assert sorted(cache.glob("*.onnx")) == exported and exported[0].stat().st_mtime_ns == stamp
    cat = crops_of(first, [IMAGES_DIR / "cat.png"])
    np.testing.assert_array_equal(first.forward(cat).embeddings, again.forward(cat).embeddings)
    # Another embedding definition is another graph, so another cache entry.
    Embedder(make_settings(engine=engine, model_cache_dir=cache, embedding="mean")).load()
    assert len(list(cache.glob("*.onnx"))) == 2


def _imported_heavy_modules(stderr: str) -> set[str]:
    """Top-level torch/timm packages named in `python -X importtime` output."""
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in stderr.splitlines() if "|" in line}
    return names & {"torch", "timm", "torchvision"}


@pytest.mark.slow
@exported_engines
def test_the_cli_with_a_cached_export_imports_neither_torch_nor_timm(engine: str, tmp_path: Path) -> None:
    Embedder(Settings(engine=engine)).load()  # the export is cached (made now if it was not)
    env = {**os.environ, "IMGSIM_ENGINE": engine, "IMGSIM_DATA_DIR": str(tmp_path / "data")}
    args = ["--images_folder", str(IMAGES_DIR), "--ref_image", "cat.png", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "similarity_analysis.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cat_mirror.png" in done.stdout
    assert _imported_heavy_modules(done.stderr) == set()


API_SCRIPT = """
import sys
from fastapi.testclient import TestClient
from app.main import create_app
from index.config import Settings

with TestClient(create_app(Settings())) as client:
    with open(sys.argv[1], "rb") as fh:
        response = client.post("/embed", files={"files": ("cat.png", fh, "image/png")})
    assert response.status_code == 200, response.text
print(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "timm", "torchvision"}))
"""


@pytest.mark.slow
@exported_engines
def test_the_api_with_a_cached_export_imports_neither_torch_nor_timm(engine: str, tmp_path: Path) -> None:
    Embedder(Settings(engine=engine)).load()
    env = {**os.environ, "IMGSIM_ENGINE": engine, "IMGSIM_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-c", API_SCRIPT, str(IMAGES_DIR / "cat.png")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@exported_engines
def test_int8_stays_close_to_fp32_and_classifies_like_it(engine: str, torch_fp32: Embedder) -> None:
    int8 = Embedder(Settings(engine=engine, precision="int8")).load()
    assert str(int8.dtype) == "int8"
    files = sorted(p for p in IMAGES_DIR.iterdir() if p.suffix != ".md")
    want, got = embed_all(torch_fp32, files), embed_all(int8, files)
    assert np.sum(want.embeddings * got.embeddings, axis=1).mean() >= 0.98
    named = {f.name: g[0].label for f, g in zip(files, got.predictions, strict=True)}
    assert named["coffee.jpg"] == "espresso"

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
from index.model.engines.export import INPUT_NAME, SHIPPED_DIR, export_onnx
from index.model.engines.exported import ExportedEngine
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
def agreement_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The sample photos, and of each a mirrored, a rotated and a zoomed copy made here."""
    from PIL import Image, ImageOps

    files = sorted(p for p in IMAGES_DIR.iterdir() if p.suffix != ".md")
    out = tmp_path_factory.mktemp("agreement")
    made = []
    for f in files:
        with Image.open(f) as img:
            rgb = img.convert("RGB")
        w, h = rgb.size
        variants = {
            "mirror": ImageOps.mirror(rgb),
            "rotated": rgb.rotate(17, expand=True),
            "zoom": rgb.crop((w // 5, h // 5, w - w // 5, h - h // 5)),
        }
        for name, variant in variants.items():
            made.append(out / f"{f.stem}-{name}.png")
            variant.save(made[-1])
    return files + made


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
def test_the_default_model_runs_the_shipped_export_and_others_are_made_once_into_the_cache(
    engine: str, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    cache = tmp_path / "models"
    shipped = Embedder(make_settings(engine=engine, model_cache_dir=cache)).load()
    assert list(cache.glob("*.onnx")) == []
    assert engine_model_path(shipped).parent == SHIPPED_DIR
    # Another embedding definition is another graph: exported once (with torch) into the cache.
    first = Embedder(make_settings(engine=engine, model_cache_dir=cache, embedding="mean")).load()
    exported = sorted(cache.glob("*.onnx"))
    assert len(exported) == 1 and "-mean-fp32-" in exported[0].name
    stamp = exported[0].stat().st_mtime_ns
    again = Embedder(make_settings(engine=engine, model_cache_dir=cache, embedding="mean")).load()
    assert sorted(cache.glob("*.onnx")) == exported and exported[0].stat().st_mtime_ns == stamp
    cat = crops_of(first, [IMAGES_DIR / "cat.png"])
    np.testing.assert_array_equal(first.forward(cat).embeddings, again.forward(cat).embeddings)


def engine_model_path(embedder: Embedder) -> Path:
    engine = embedder.engine
    assert isinstance(engine, ExportedEngine)
    return engine.model_path()


@pytest.mark.skipif("onnxruntime" not in EXPORTED, reason="onnxruntime is not installed")
def test_the_shipped_export_is_the_one_torch_makes_now(tmp_path: Path) -> None:
    """The shipped file has the name the cache key gives today's inputs, and gives a fresh export's vectors."""
    import onnxruntime as ort

    settings = Settings(model_cache_dir=tmp_path, engine="onnxruntime", precision="fp32")
    embedder = Embedder(settings)
    shipped = engine_model_path(embedder)
    assert shipped.parent == SHIPPED_DIR and sorted(SHIPPED_DIR.glob("*.onnx")) == [shipped]
    fresh = tmp_path / "fresh.onnx"
    export_onnx(settings, embedder.spec, embedder.embedding, fresh)
    files = sorted(p for p in IMAGES_DIR.iterdir() if p.suffix != ".md")
    feed = {INPUT_NAME: crops_of(embedder, files)}
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feed) for p in (shipped, fresh)]
    for got, want in zip(*runs, strict=True):
        # Equal to float rounding: torch folds the export's constants with the CPU's own kernels (1e-7 apart
        # between an AVX2-only CPU and the one that made the shipped file).
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif("onnxruntime" not in EXPORTED, reason="onnxruntime is not installed")
def test_without_torch_int8_is_made_from_the_shipped_export_and_another_definition_asks_for_torch(
    make_settings: SettingsFactory,
) -> None:
    """A default install (no torch): int8 is quantized from the shipped fp32 export; an export only torch can
    make is refused with one line naming the fix."""
    code = """
import sys
sys.modules["torch"] = None  # importing torch now fails, as where it is not installed
from index.config import Settings
from index.errors import EngineUnavailable
from index.model.embedder import Embedder
int8 = Embedder(Settings(engine="onnxruntime", precision="int8", model_cache_dir=sys.argv[1])).load()
print(int8.engine.precision)
try:
    Embedder(Settings(embedding="mean", model_cache_dir=sys.argv[1])).load()
except EngineUnavailable as exc:
    print(exc)
"""
    settings = make_settings()
    done = subprocess.run(
        [sys.executable, "-c", code, str(settings.model_cache_dir / "empty")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    precision, refusal = done.stdout.strip().splitlines()
    assert precision == "int8"
    assert "requirements-torch.txt" in refusal and "mean" in refusal


def _imported_heavy_modules(stderr: str) -> set[str]:
    """Top-level torch/timm packages named in `python -X importtime` output."""
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in stderr.splitlines() if "|" in line}
    return names & {"torch", "timm", "torchvision"}


@pytest.mark.slow
@exported_engines
def test_the_cli_with_an_empty_model_cache_imports_neither_torch_nor_timm(engine: str, tmp_path: Path) -> None:
    """The default install's first run: the shipped export, no torch."""
    env = {
        **os.environ,
        "IMGSIM_ENGINE": engine,
        "IMGSIM_DATA_DIR": str(tmp_path / "data"),
        "IMGSIM_MODEL_CACHE_DIR": str(tmp_path / "empty-cache"),
    }
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
def test_the_api_with_an_empty_model_cache_imports_neither_torch_nor_timm(engine: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "IMGSIM_ENGINE": engine,
        "IMGSIM_DATA_DIR": str(tmp_path / "data"),
        "IMGSIM_MODEL_CACHE_DIR": str(tmp_path / "empty-cache"),
    }
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

"""Shared fixtures: settings with a `tmp_path` data directory, one loaded embedder per session, image factories."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from index.config import Settings
from index.embedder import Embedder, EmbedResult
from index.engines import installed_engines
from index.registry import resolve_embedding

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGES_DIR = REPO_ROOT / "images"
# The ImageNet sample lives beside the checkout, never inside it; tests that need it skip without it.
IMAGENET_SAMPLE_DIR = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-sample"
CAT_VARIANTS = frozenset({"cat_crop.jpg", "cat_mirror.png", "cat_recompressed.jpg", "cat_grey.png"})


def model_version(model: str = "efficientnet_lite0") -> str:
    """The version string an index built with `model` and the default embedding definition records."""
    return f"{model}:{resolve_embedding('default').name}"


class CountingEmbedder(Embedder):
    """The real embedder, counting its forward passes and the images they embedded."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.forward_calls = 0
        self.images_embedded = 0

    def forward(self, crops: Any) -> EmbedResult:
        self.forward_calls += 1
        self.images_embedded += len(crops)
        return super().forward(crops)


class SettingsFactory(Protocol):
    def __call__(self, **overrides: Any) -> Settings: ...


class ImageFactory(Protocol):
    def __call__(
        self,
        fmt: str = "PNG",
        size: tuple[int, int] = (64, 48),
        mode: str = "RGB",
        seed: int = 0,
        **save_options: Any,
    ) -> bytes: ...


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings whose data directory is `tmp_path / "data"`, with any field overridden."""

    def make(**overrides: Any) -> Settings:
        return Settings(**{"data_dir": tmp_path / "data", **overrides})

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def embedder() -> CountingEmbedder:
    """The default model, loaded once per test session; pass it to `ImageIndex(settings, embedder)`."""
    return CountingEmbedder(Settings()).load()  # type: ignore[return-value]


@pytest.fixture(scope="session", params=installed_engines())
def engine_embedder(request: pytest.FixtureRequest) -> Embedder:
    """The default model on each installed inference engine in turn (default precision), loaded once."""
    return Embedder(Settings(engine=request.param)).load()


@pytest.fixture(scope="session")
def sample_index_dir(tmp_path_factory: pytest.TempPathFactory, embedder: CountingEmbedder) -> Path:
    """A data directory holding the sample photos, ingested once per session; copy it before use."""
    from index.service import ImageIndex

    data_dir = tmp_path_factory.mktemp("sample-index") / "data"
    with ImageIndex(Settings(data_dir=data_dir), embedder) as index:
        results = index.ingest_folder(IMAGES_DIR)
    assert {r.status for r in results} == {"added"}
    return data_dir


@pytest.fixture
def sample_settings(tmp_path: Path, sample_index_dir: Path) -> Settings:
    """Settings for a private copy of the ingested sample photos."""
    data_dir = tmp_path / "data"
    shutil.copytree(sample_index_dir, data_dir)
    return Settings(data_dir=data_dir)


@pytest.fixture
def images_dir() -> Path:
    """The committed sample photos (read-only: copy them before changing anything)."""
    return IMAGES_DIR


@pytest.fixture
def images_copy(tmp_path: Path) -> Path:
    """A writable copy of the sample photos."""
    folder = tmp_path / "images"
    shutil.copytree(IMAGES_DIR, folder, ignore=shutil.ignore_patterns("*.md"))
    return folder


@pytest.fixture
def imagenet_sample() -> Path:
    if not IMAGENET_SAMPLE_DIR.is_dir():
        pytest.skip(f"ImageNet sample not present at {IMAGENET_SAMPLE_DIR}")
    return IMAGENET_SAMPLE_DIR


def random_pixels(size: tuple[int, int], channels: int, seed: int) -> NDArray[np.uint8]:
    """Smooth random colours (compressible, and distinct per seed)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, channels), dtype=np.uint8)
    img = Image.fromarray(small.squeeze(-1) if channels == 1 else small)
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR))


def encode_image(
    fmt: str = "PNG", size: tuple[int, int] = (64, 48), mode: str = "RGB", seed: int = 0, **save_options: Any
) -> bytes:
    """Bytes of a small image in `fmt` and `mode`; a different `seed` gives different content."""
    rgb = Image.fromarray(random_pixels(size, 3, seed))
    img = rgb if mode == "RGB" else rgb.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save_options)
    return buf.getvalue()


@pytest.fixture
def make_image() -> ImageFactory:
    """`make_image("JPEG", (w, h), mode, seed, **save_options)` -> encoded bytes."""
    return encode_image


@pytest.fixture
def truncated_jpeg() -> bytes:
    """The first half of a real JPEG: a valid header, then nothing."""
    data = (IMAGES_DIR / "coffee.jpg").read_bytes()
    return data[: len(data) // 2]


def unit_vectors(n: int, dim: int, seed: int = 0) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)

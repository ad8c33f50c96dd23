"""Shared fixtures: settings with a `tmp_path` data directory, one loaded embedder per session, image factories."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageOps

from index.config import Settings
from index.model.embedder import Embedder, EmbedResult
from index.model.engines import installed_engines
from index.model.registry import resolve_embedding
from tests import milvus_server

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGES_DIR = REPO_ROOT / "images"
CAT_VARIANTS = frozenset({"cat_crop.jpg", "cat_mirror.png", "cat_recompressed.jpg", "cat_grey.png"})

# The configurations the store-level and API tests run against. PostgreSQL comes from a server whose URL (a role
# allowed to create databases) is in this variable; `.ci/run` starts one and sets it. The vectors go to a
# milvus-lite file, or to a real Milvus standalone server: the one in this variable, else one started here from
# the `milvus` package (tests.milvus_server; it needs root for its network namespace).
BACKENDS = ("sqlite-faiss", "postgresql-milvus", "postgresql-milvus-server")
POSTGRES_URL_ENV = "IMGSIM_TEST_POSTGRES_URL"
MILVUS_URI_ENV = "IMGSIM_TEST_MILVUS_URI"
_created_databases: list[str] = []


def postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV, "")
    if not url:
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_URL_ENV}=postgresql+psycopg://user@host:port/postgres")
    return url


def fresh_postgres_database() -> str:
    """The URL of a new, empty database on the test server (dropped at the end of the session)."""
    from sqlalchemy import create_engine, make_url

    admin = make_url(postgres_admin_url())
    name = f"imgsim_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    _created_databases.append(name)
    return admin.set(database=name).render_as_string(hide_password=False)


def backend_overrides(backend: str, folder: Path) -> dict[str, Any]:
    """Settings that put an index on `backend`; `folder` holds whatever it keeps in files."""
    if backend == "sqlite-faiss":
        return {}
    if backend == "postgresql-milvus":
        return {
            "database_url": fresh_postgres_database(),
            "vector_store": "milvus",
            "milvus_uri": str(folder / "milvus.db"),
        }
    database_url = fresh_postgres_database()  # skips first when there is no PostgreSQL
    uri = milvus_server_uri()
    return {
        "database_url": database_url,
        "vector_store": "milvus",
        "milvus_uri": uri,
        "milvus_collection": milvus_server.new_collection_name(),
    }


def milvus_server_uri() -> str:
    """The real Milvus server of this test session: IMGSIM_TEST_MILVUS_URI's, else one started on first use."""
    return os.environ.get(MILVUS_URI_ENV) or milvus_server.session_server().uri


@pytest.fixture(scope="module", autouse=True)
def _drop_milvus_collections() -> Iterator[None]:
    """Each module's collections on the Milvus server are dropped after it (the server holds them loaded)."""
    created = len(milvus_server.collections)
    yield
    milvus_server.drop_collections(os.environ.get(MILVUS_URI_ENV) or None, since=created)


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    if not _created_databases:
        return
    from sqlalchemy import create_engine

    engine = create_engine(os.environ[POSTGRES_URL_ENV], isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for name in _created_databases:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


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
def backend() -> str:
    """The configuration tests run against; modules and folders that describe behaviour every backend must
    share override this with `params=BACKENDS`."""
    return "sqlite-faiss"


@pytest.fixture
def make_settings(tmp_path: Path, backend: str) -> SettingsFactory:
    """Settings whose data directory is `tmp_path / "data"` (on `backend`), with any field overridden."""
    on_backend: list[dict[str, Any]] = []  # one database per test, made on first use

    def make(**overrides: Any) -> Settings:
        if not on_backend:
            on_backend.append(backend_overrides(backend, tmp_path))
        return Settings(**{"data_dir": tmp_path / "data", **on_backend[0], **overrides})

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


def derived_photos(folder: Path, count: int, start: int = 0) -> list[Path]:
    """`count` new JPEGs cut from the sample photos (distinct crops, so distinct content), written to `folder`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in IMAGES_DIR.iterdir() if p.suffix in {".jpg", ".png"})
    paths = []
    for n in range(start, start + count):
        with Image.open(sources[n % len(sources)]) as img:
            rgb = img.convert("RGB")
        shift = 8 * (n // len(sources) + 1)
        crop = rgb.crop((shift, shift, rgb.width - shift, rgb.height - shift))
        path = folder / f"derived_{n:03d}.jpg"
        crop.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


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


# Display orientation -> how the stored pixels lie: the transpose that turns the upright picture into them.
_SIDEWAYS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def encode_photo(
    source: Path,
    fmt: str,
    *,
    taken: str | None = None,
    make: str | None = None,
    model: str | None = None,
    lens: str | None = None,
    gps: tuple[float, float] | None = None,
    orientation: int = 1,
    quality: int = 90,
) -> bytes:
    """A committed sample photo re-encoded in `fmt` (HEIF, AVIF, JPEG...) as a camera writes it: EXIF with
    the date taken ("2024:05:01 12:30:00"), make, model, lens and GPS (lat, lon in degrees), and for
    `orientation` 6 or 8 the pixels stored sideways with the EXIF orientation that turns them upright."""
    upright = Image.open(source).convert("RGB")
    pixels = upright.transpose(_SIDEWAYS[orientation]) if orientation in _SIDEWAYS else upright
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    for tag, value in ((0x010F, make), (0x0110, model)):
        if value is not None:
            exif[tag] = value
    sub = exif.get_ifd(0x8769)
    if taken is not None:
        sub[0x9003] = taken
    if lens is not None:
        sub[0xA434] = lens
    if gps is not None:
        ifd = exif.get_ifd(0x8825)
        for ref, value, tag, signs in ((1, gps[0], 2, "NS"), (3, gps[1], 4, "EW")):
            whole = abs(value)
            degrees, minutes = int(whole), int(whole * 60 % 60)
            ifd[ref] = signs[value < 0]
            ifd[tag] = (float(degrees), float(minutes), round((whole * 3600) % 60, 4))
    buf = io.BytesIO()
    pixels.save(buf, format=fmt, exif=exif.tobytes(), quality=quality)
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


# A second process that takes a data directory's writer lock and keeps it until killed.
HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from index.storage.lock import DataDirLock
    lock = DataDirLock(Path(sys.argv[1]), url=sys.argv[2] or None)
    print("locked", flush=True)
    time.sleep(120)
    """
)


def hold_lock_in_another_process(data_dir: Path, url: str = "") -> subprocess.Popen[str]:
    """A process holding the writer lock of `data_dir` (as a server at `url`, if given); kill it when done."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(data_dir), url], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def zero_byte_database(data_dir: Path) -> None:
    """A data dir whose database was truncated to 0 bytes while a kept image remains."""
    (data_dir / "blobs" / "ab").mkdir(parents=True)
    (data_dir / "blobs" / "ab" / ("ab" * 32)).write_bytes(b"kept image")
    (data_dir / "imgsim.sqlite3").write_bytes(b"")


# Start-up failures shared by the API and the CLI: environment, how to prepare the data dir, expected text.
STARTUP_FAILURES: dict[str, tuple[dict[str, str], Callable[[Path], None] | None, str]] = {
    "precision": ({"IMGSIM_PRECISION": "fp64"}, None, "IMGSIM_PRECISION"),
    "batch size": ({"IMGSIM_BATCH_SIZE": "0"}, None, "IMGSIM_BATCH_SIZE"),
    "empty database": ({}, zero_byte_database, "0 bytes"),
    "no gpu": ({"IMGSIM_DEVICE": "cuda"}, None, "no such CUDA GPU"),
}


def duplicates_folder(photos: Path, names: tuple[str, ...] = ("astronaut.jpg", "coffee.jpg", "rocket.jpg")) -> Path:
    """`photos` filled with the sample photos `names`, two edited copies of the astronaut (mirrored, half size)
    and a byte copy of the coffee in a subfolder."""
    photos.mkdir()
    for name in names:
        shutil.copy(IMAGES_DIR / name, photos / name)
    img = Image.open(IMAGES_DIR / "astronaut.jpg").convert("RGB")
    ImageOps.mirror(img).save(photos / "astronaut_mirror.jpg", quality=70)
    img.resize((img.width // 2, img.height // 2)).save(photos / "astronaut_small.jpg", quality=80)
    (photos / "sub").mkdir()
    shutil.copy(IMAGES_DIR / "coffee.jpg", photos / "sub" / "coffee.jpg")
    return photos

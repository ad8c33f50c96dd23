"""The ingest pipeline's stages: ordered decoding, turn-taking, warm-up while the model loads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from index.config import Settings
from index.errors import ImageDecodeError
from index.model.embedder import Embedder
from index.pipeline import ImageSource, ReadImage, decode_stream, embed_read, read_sources, resolved_paths
from tests.conftest import CountingEmbedder, encode_photo


def _read(images_dir: Path) -> list[ReadImage]:
    return read_sources([ImageSource.from_path(p) for p in sorted(images_dir.iterdir()) if p.suffix != ".md"], 2)


@pytest.mark.parametrize("overlap", [True, False, "switching"])
def test_decoding_yields_every_image_in_input_order_whatever_the_overlap(
    embedder: CountingEmbedder, images_dir: Path, overlap: object
) -> None:
    items = _read(images_dir)
    calls = iter([True, False, True, False, False, False])
    mode = (lambda: next(calls, False)) if overlap == "switching" else bool(overlap)
    out = list(decode_stream(items, embedder, 10**8, workers=2, window=3, overlap=mode))
    assert [item.source.name for item, _ in out] == [item.source.name for item in items]
    assert all(not isinstance(outcome, Exception) for _, outcome in out)


def test_a_bad_image_is_reported_and_the_others_still_embedded(embedder: CountingEmbedder, images_dir: Path) -> None:
    items = _read(images_dir)
    bad = ReadImage(ImageSource(name="bad.jpg", data=b"not an image"), b"not an image", "0" * 64)
    errors: list[tuple[str, Exception]] = []
    batches = list(
        embed_read([bad, *items], embedder, 10**8, 4, 2, lambda item, exc: errors.append((item.source.name, exc)))
    )
    assert [name for name, _ in errors] == ["bad.jpg"]
    assert isinstance(errors[0][1], ImageDecodeError)
    assert sum(len(b) for b in batches) == len(items)


def test_an_unloaded_model_loads_while_images_decode_and_gives_the_same_vectors(
    embedder: CountingEmbedder, images_dir: Path
) -> None:
    items = _read(images_dir)
    fresh = Embedder(Settings())
    assert not fresh.loaded
    got = [e for batch in embed_read(items, fresh, 10**8, 4, 2, lambda *_: None) for e in batch]
    assert fresh.loaded
    want = [e for batch in embed_read(items, embedder, 10**8, 4, 2, lambda *_: None) for e in batch]
    assert [e.source.name for e in got] == [e.source.name for e in want]
    np.testing.assert_allclose(np.stack([e.embedding for e in got]), np.stack([e.embedding for e in want]), atol=2e-2)


def test_when_no_image_decodes_the_model_is_never_loaded(truncated_jpeg: bytes) -> None:
    fresh = Embedder(Settings())
    bad = [
        ReadImage(ImageSource(name=f"bad{n}.jpg", data=data), data, f"{n:064x}")
        for n, data in enumerate([truncated_jpeg, b"not an image"])
    ]
    errors: list[str] = []
    assert list(embed_read(bad, fresh, 10**8, 4, 2, lambda item, _: errors.append(item.source.name))) == []
    assert sorted(errors) == ["bad0.jpg", "bad1.jpg"]
    assert fresh._loader is None and not fresh.loaded
    assert "imgsim-model-load" not in {t.name for t in threading.enumerate()}


def test_jpegs_decoded_by_torchvision_crop_like_pillow(images_dir: Path) -> None:
    import torch

    from index.model.imaging import decode_for_model, decode_jpegs_on_device

    pre = Embedder(Settings()).preprocessing
    files = [p for p in sorted(images_dir.iterdir()) if p.suffix in (".jpg", ".png")]
    items = [(p.read_bytes(), f"{n:064x}") for n, p in enumerate(files)]
    taken = encode_photo(images_dir / "coffee.jpg", "JPEG", taken="2024:05:01 12:30:00", make="Apple", gps=(1.5, 2.5))
    items.append((taken, "f" * 64))
    outcomes = decode_jpegs_on_device(items, pre, 10**8, torch.device("cpu"))
    assert len(outcomes) == len(items)
    for (data, sha), outcome in zip(items, outcomes, strict=True):
        assert not isinstance(outcome, Exception)
        reference = decode_for_model(data, pre, 10**8, sha256=sha)
        assert (outcome.sha256, outcome.width, outcome.height) == (sha, reference.width, reference.height)
        assert outcome.exif == reference.exif  # read from the header on either path
        crop = np.asarray(outcome.crop)
        assert crop.shape == reference.crop.shape == (pre.input_size, pre.input_size, 3)
        # Different decoders and resamplers: close, not identical.
        assert np.abs(crop.astype(int) - np.asarray(reference.crop).astype(int)).mean() < 6
    assert outcomes[-1].exif.camera_make == "Apple" and outcomes[-1].exif.latitude == 1.5


def test_device_decoding_embeds_like_the_pillow_path_and_reports_bad_images(images_dir: Path) -> None:
    from index.pipeline import embed_decoding_on_device

    # Decoding on a device is the torch engine's path (nvJPEG on CUDA; torchvision's CPU decoder here).
    embedder = Embedder(Settings(engine="torch"))
    items = _read(images_dir)
    bad = ReadImage(ImageSource(name="bad.jpg", data=b"\xff\xd8\xff broken"), b"\xff\xd8\xff broken", "1" * 64)
    errors: list[str] = []
    on_device = [
        e
        for b in embed_decoding_on_device([*items, bad], embedder, 10**8, 4, lambda i, _: errors.append(i.source.name))
        for e in b
    ]
    on_host = [e for b in embed_read(items, embedder, 10**8, 4, 2, lambda *_: None) for e in b]
    assert errors == ["bad.jpg"]
    assert [e.source.name for e in on_device] == [e.source.name for e in on_host]
    cosines = np.sum(np.stack([e.embedding for e in on_device]) * np.stack([e.embedding for e in on_host]), axis=1)
    assert cosines.min() > 0.97


def test_a_folders_paths_resolve_as_each_file_would_on_its_own(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.jpg").write_bytes(b"a")
    (tmp_path / "elsewhere.jpg").write_bytes(b"b")
    (real / "link.jpg").symlink_to(tmp_path / "elsewhere.jpg")  # a symlinked file resolves to its target
    (tmp_path / "via").symlink_to(real)  # a symlinked folder resolves to the real one
    paths = [tmp_path / "via" / "a.jpg", tmp_path / "via" / "link.jpg", real / "a.jpg", Path("relative.jpg")]
    assert resolved_paths(paths) == [p.resolve() for p in paths]
    sources = ImageSource.from_paths(paths)
    assert [(s.name, s.path) for s in sources] == [(p.name, str(p.resolve())) for p in paths]

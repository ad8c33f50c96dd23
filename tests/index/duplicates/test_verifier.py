"""Verdicts are kept by content in the metadata database: a pair's pixels are compared once, on every backend."""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image, ImageOps

from index.config import Settings
from index.duplicates import group_is_copies
from index.pipeline import ImageSource
from index.service import ImageIndex
from index.storage.schema import PairVerdictRow
from tests.conftest import BACKENDS, IMAGES_DIR, CountingEmbedder


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _mirrored(name: str) -> bytes:
    buf = io.BytesIO()
    ImageOps.mirror(Image.open(IMAGES_DIR / name).convert("RGB")).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def test_a_verdict_is_kept_and_outlives_a_restart_without_the_bytes(
    settings: Settings, embedder: CountingEmbedder
) -> None:
    sources = [
        ImageSource(name="coffee.jpg", data=(IMAGES_DIR / "coffee.jpg").read_bytes()),
        ImageSource(name="coffee mirrored.jpg", data=_mirrored("coffee.jpg")),
        ImageSource(name="rocket.jpg", data=(IMAGES_DIR / "rocket.jpg").read_bytes()),
    ]
    with ImageIndex(settings, embedder) as index:
        index.ingest(sources)
        (group,) = index.duplicate_groups(level="near").groups
        first = [(m.image.id, m.evidence) for m in group.members]
        assert first[1][1] is not None and first[1][1].copy and first[1][1].mirrored
    # Reopened, with the kept bytes gone: the stored verdict still proves the copy (nothing is decoded again).
    shutil.rmtree(settings.data_dir / "blobs", ignore_errors=True)
    if settings.blob_url is None:
        (settings.data_dir / "blobs").mkdir()
    with ImageIndex(settings, embedder) as index:
        (group,) = index.duplicate_groups(level="near").groups
        assert [(m.image.id, m.evidence) for m in group.members] == first


def test_images_whose_bytes_cannot_be_read_are_never_proven_copies(
    settings: Settings, embedder: CountingEmbedder
) -> None:
    datas = [(IMAGES_DIR / "coffee.jpg").read_bytes(), _mirrored("coffee.jpg")]
    with ImageIndex(settings, embedder) as index:
        index.ingest(
            [ImageSource(name="coffee.jpg", data=datas[0]), ImageSource(name="coffee mirrored.jpg", data=datas[1])]
        )
        for info in index.list_images()[1]:
            index.store.delete_blob(info.sha256)
        assert index.duplicate_groups(level="near").groups == []
        # Still similar photos, by their vectors; not proven copies.
        (group,) = index.duplicate_groups(level="similar").groups
        assert len(group.members) == 2 and not group_is_copies(group)
        # Nothing was remembered about the pair: with the bytes back, it is proven a copy.
        index.store.write_blobs([(i.sha256, d) for i, d in zip(index.list_images()[1], datas, strict=True)])
        index.ingest([ImageSource(name="rocket.jpg", data=(IMAGES_DIR / "rocket.jpg").read_bytes())])  # anew
        (group,) = index.duplicate_groups(level="near").groups
        assert group_is_copies(group) and len(group.members) == 2


def test_a_verdict_read_once_is_answered_from_memory_after(settings: Settings) -> None:
    from index.duplicates.verification import Evidence
    from index.duplicates.verifier import StoredVerdicts
    from index.storage.store import ImageStore

    store = ImageStore(settings.data_dir, settings.database_url)
    try:
        key = ("a" * 64, "b" * 64)
        StoredVerdicts(store).put_verdicts([(key, Evidence(True, "pixels"))], "v1")
        verdicts = StoredVerdicts(store)  # another process, say: nothing in memory yet
        assert verdicts.get_verdicts([key], "v1")[key].copy
        with store.session() as s:  # gone from the database (nothing removes one; this shows the memory)
            s.execute(PairVerdictRow.__table__.delete())
        assert verdicts.get_verdicts([key], "v1")[key].copy
        assert verdicts.get_verdicts([key], "v2") == {}
        assert StoredVerdicts(store).get_verdicts([key], "v1") == {}
    finally:
        store.close()

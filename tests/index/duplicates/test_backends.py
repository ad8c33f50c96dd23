"""Duplicates on Milvus come from the server's own search, with no copy of the stored vectors, and are the very
groups FAISS finds: at every level and threshold, among a subset, for one image, and after the trash."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from index.config import Settings
from index.duplicates import DuplicateReport
from index.duplicates.candidates import SERVER_NEIGHBOURS
from index.pipeline import ImageSource
from index.service import ImageIndex
from tests.conftest import BACKENDS, IMAGES_DIR, CountingEmbedder, backend_overrides
from tests.index.duplicates.test_finder import edits_of

MILVUS = [b for b in BACKENDS if b != "sqlite-faiss"]
CRITERIA: list[dict[str, Any]] = [
    {"level": "exact"},
    {"level": "near"},
    {"level": "similar"},
    {"threshold": 0.9},
    {"threshold": 0.5},
]
# More copies of one photo than the neighbours first asked of the server: the search must ask again for more.
COINS_COPIES = SERVER_NEIGHBOURS + 4


def _reencoded(path: Path, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _same_pixels(path: Path) -> bytes:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def photo_sources() -> list[ImageSource]:
    """Every sample photo (the cat with its variants), edited copies of two, the coffee's pixels as a PNG (an
    exact copy), and many re-encodings of the coins (a group larger than the server is first asked for)."""
    sources = [
        ImageSource(name=p.name, data=p.read_bytes()) for p in sorted(IMAGES_DIR.glob("*.*")) if p.suffix != ".md"
    ]
    for stem in ("astronaut", "rocket"):
        sources += [
            ImageSource(name=f"{stem}__{e}.jpg", data=d) for e, d in edits_of(IMAGES_DIR / f"{stem}.jpg").items()
        ]
    sources.append(ImageSource(name="coffee__pixels.png", data=_same_pixels(IMAGES_DIR / "coffee.jpg")))
    coins = IMAGES_DIR / "coins.jpg"
    sources += [ImageSource(name=f"coins__q{q}.jpg", data=_reencoded(coins, q)) for q in range(40, 40 + COINS_COPIES)]
    return sources


def _open(folder: Path, backend: str, embedder: CountingEmbedder) -> ImageIndex:
    settings = Settings(data_dir=folder / "data", **backend_overrides(backend, folder))
    index = ImageIndex(settings, embedder)
    results = index.ingest(photo_sources())
    assert {r.status for r in results} == {"added"}
    return index


@pytest.fixture(scope="module")
def on_faiss(tmp_path_factory: pytest.TempPathFactory, embedder: CountingEmbedder) -> Iterator[ImageIndex]:
    with _open(tmp_path_factory.mktemp("faiss"), "sqlite-faiss", embedder) as index:
        yield index


@pytest.fixture(scope="module", params=MILVUS)
def on_milvus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: CountingEmbedder
) -> Iterator[ImageIndex]:
    with _open(tmp_path_factory.mktemp("milvus"), str(request.param), embedder) as index:
        yield index


def described(report: DuplicateReport) -> list[tuple[str, list[tuple[str, float, bool | None]]]]:
    """Each group as names: the kept image, then each member with its similarity and whether it is a proven copy."""
    return [
        (
            min(group.members[0].image.names),
            [
                (min(m.image.names), round(m.similarity, 4), None if m.evidence is None else m.evidence.copy)
                for m in group.members
            ],
        )
        for group in report.groups
    ]


def ids_by_name(index: ImageIndex) -> dict[str, int]:
    return {min(info.names): info.id for info in index.list_images(limit=1000)[1]}


def test_milvus_asks_its_own_collection_for_duplicates_not_a_copy(on_milvus: ImageIndex) -> None:
    assert on_milvus.duplicates.vectors is on_milvus.vectors
    assert on_milvus.duplicates is on_milvus.duplicates  # one finder, whose last answer is kept


@pytest.mark.parametrize("criterion", CRITERIA, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_milvus_finds_the_groups_faiss_finds(
    on_faiss: ImageIndex, on_milvus: ImageIndex, criterion: dict[str, Any]
) -> None:
    expected = described(on_faiss.duplicate_groups(**criterion))
    assert described(on_milvus.duplicate_groups(**criterion)) == expected
    assert expected  # the photos make groups at every level


def test_a_group_larger_than_the_neighbours_first_asked_is_found_whole(
    on_faiss: ImageIndex, on_milvus: ImageIndex
) -> None:
    for index in (on_faiss, on_milvus):
        names = [{min(m.image.names) for m in g.members} for g in index.duplicate_groups(level="near").groups]
        coins = next(g for g in names if "coins.jpg" in g)
        assert len(coins) == COINS_COPIES + 1


def test_milvus_finds_the_groups_faiss_finds_among_a_subset(on_faiss: ImageIndex, on_milvus: ImageIndex) -> None:
    def among(index: ImageIndex) -> list[int]:
        ids = ids_by_name(index)
        return [i for name, i in ids.items() if name.startswith(("astronaut", "cat", "coins__q4"))]

    for criterion in CRITERIA:
        expected = described(on_faiss.duplicate_groups(**criterion, among=among(on_faiss)))
        assert described(on_milvus.duplicate_groups(**criterion, among=among(on_milvus))) == expected
    groups = on_milvus.duplicate_groups(level="near", among=among(on_milvus)).groups
    members = {min(m.image.names) for g in groups for m in g.members}
    assert members and all(n.startswith(("astronaut", "cat", "coins__q4")) for n in members)


@pytest.mark.parametrize("name", ["astronaut.jpg", "cat.png", "coins.jpg", "coffee.jpg"])
def test_milvus_finds_one_images_duplicates_as_faiss_does(
    on_faiss: ImageIndex, on_milvus: ImageIndex, name: str
) -> None:
    for criterion in CRITERIA:
        expected = described(on_faiss.duplicates_of(ids_by_name(on_faiss)[name], **criterion))
        assert described(on_milvus.duplicates_of(ids_by_name(on_milvus)[name], **criterion)) == expected


def test_milvus_and_faiss_agree_after_moving_to_trash_and_restoring(
    on_faiss: ImageIndex, on_milvus: ImageIndex
) -> None:
    moved = ["astronaut.jpg", "rocket__small.jpg", "coins__q45.jpg", "cat_grey.png"]
    indexes = (on_faiss, on_milvus)
    trashed = {index: [ids_by_name(index)[n] for n in moved] for index in indexes}
    try:
        for index in indexes:
            for i in trashed[index]:
                index.delete(i)
        for criterion in CRITERIA:
            expected = described(on_faiss.duplicate_groups(**criterion))
            assert described(on_milvus.duplicate_groups(**criterion)) == expected
            assert not {n for _, members in expected for n, _, _ in members} & set(moved)
    finally:
        for index in indexes:
            for i in trashed[index]:
                index.restore(i)
    for criterion in CRITERIA:
        expected = described(on_faiss.duplicate_groups(**criterion))
        assert described(on_milvus.duplicate_groups(**criterion)) == expected
        if criterion == {"level": "near"}:
            assert {n for _, members in expected for n, _, _ in members} >= set(moved) - {"cat_grey.png"}

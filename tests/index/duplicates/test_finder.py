"""Near-duplicate groups: real edited photos, the no-chaining rule, levels per embedding, copies first in search."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from index import search
from index.config import Settings
from index.duplicates import Criterion, DuplicateSpace, find_pairs, group_is_copies, group_pairs
from index.errors import InvalidArgument
from index.model.registry import EMBEDDINGS, DuplicateLevels, resolve_embedding
from index.pipeline import ImageSource
from index.search import QueryImage
from index.service import ImageIndex
from index.vectors.faiss_index import IndexMeta, VectorIndex
from tests.conftest import IMAGES_DIR, CountingEmbedder, unit_vectors


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def edits_of(path: Path) -> dict[str, bytes]:
    """Edited copies of a photo, made here: crop, recompress, downscale, mirror, brightness."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    return {
        "crop": _jpeg(img.crop((w // 10, h // 10, w - w // 10, h - h // 12))),
        "recompress": _jpeg(img, quality=25),
        "small": _jpeg(img.resize((w // 3, h // 3), Image.Resampling.BILINEAR)),
        "mirror": _jpeg(ImageOps.mirror(img)),
        "bright": _jpeg(ImageEnhance.Brightness(img).enhance(1.3)),
    }


def _photos() -> list[Path]:
    """Distinct photos: the committed ones (not the cat's variants)."""
    return [IMAGES_DIR / n for n in ("astronaut.jpg", "coffee.jpg", "rocket.jpg", "coins.jpg", "camera.jpg")]


@pytest.fixture(scope="module")
def edited_index(
    tmp_path_factory: pytest.TempPathFactory, embedder: CountingEmbedder
) -> Iterator[tuple[ImageIndex, dict[str, int]]]:
    """An index of distinct photos, each with edited copies of some (file name -> id)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("dups") / "data")
    sources = []
    for n, path in enumerate(_photos()):
        sources.append(ImageSource(name=path.name, data=path.read_bytes()))
        if n % 2 == 0:  # every other photo gets copies; the rest stay alone
            sources += [ImageSource(name=f"{path.stem}__{e}.jpg", data=d) for e, d in edits_of(path).items()]
    with ImageIndex(settings, embedder) as index:
        results = index.ingest(sources)
        assert all(r.id is not None for r in results)
        yield index, {r.name: r.id for r in results if r.id is not None}


def _original(name: str) -> str:
    return name.split("__")[0].removesuffix(".jpg").removesuffix(".JPEG").removesuffix(".png")


def test_edited_copies_group_with_their_original_and_distinct_photos_stay_apart(
    edited_index: tuple[ImageIndex, dict[str, int]],
) -> None:
    index, ids = edited_index
    report = index.duplicate_groups(level="near")
    assert report.level == "near" and report.threshold == resolve_embedding("default").duplicates.near
    names = {i: n for n, i in ids.items()}
    grouped = [[names[m.image.id] for m in g.members] for g in report.groups]
    originals_with_copies = {_original(n) for n in ids if "__" in n}
    # Each group holds copies of one photo only, each proven by its pixels against the kept image.
    for group in grouped:
        assert len({_original(n) for n in group}) == 1, group
    for g in report.groups:
        assert g.level == "near" and group_is_copies(g)
        assert all(m.evidence is not None and m.evidence.copy for m in g.members[1:])
        # The kept image has the most pixels, then the larger file.
        best = min(g.members, key=lambda m: (-m.image.width * m.image.height, -m.image.byte_size))
        assert g.keep == best.image.id == g.members[0].image.id
    found = {_original(names[g.keep]) for g in report.groups}
    assert found == originals_with_copies
    # Every copy is found: crop, recompression, a third of the size, mirror, brightness.
    copies = sum("__" in n for n in ids)
    assert sum(len(g) - 1 for g in grouped) == copies
    sizes = [g.size for g in report.groups]
    assert sizes == sorted(sizes, reverse=True)
    for g in report.groups:
        assert g.members[0].similarity == 1.0 and g.keep == g.members[0].image.id
        assert all(m.similarity >= report.threshold for m in g.members)


def test_one_images_duplicates_are_its_copies_most_similar_first(
    edited_index: tuple[ImageIndex, dict[str, int]],
) -> None:
    index, ids = edited_index
    report = index.duplicates_of(ids["astronaut.jpg"], level="near")
    (group,) = report.groups
    others = [m for m in group.members[1:]]
    assert others and all(_original(next(n for n, i in ids.items() if i == m.image.id)) == "astronaut" for m in others)
    assert [m.similarity for m in others] == sorted((m.similarity for m in others), reverse=True)
    alone = index.duplicates_of(ids["coffee.jpg"], level="near")
    assert [m.image.id for m in alone.groups[0].members] == [ids["coffee.jpg"]]


def test_a_copy_of_a_stored_photo_ranks_first_in_search_and_says_so(
    edited_index: tuple[ImageIndex, dict[str, int]],
) -> None:
    index, ids = edited_index
    query = _jpeg(ImageOps.mirror(Image.open(IMAGES_DIR / "coffee.jpg")).rotate(4), quality=40)
    _sha, hits = index.search_by_image(query, "query.jpg", k=5)
    assert hits[0].image.id == ids["coffee.jpg"] and hits[0].duplicate
    assert not any(h.duplicate for h in hits[1:])
    _info, hits = index.search_by_ref("rocket.jpg", k=5)
    assert all(h.duplicate == (_original(h.image.filename) == "rocket") for h in hits)


def test_a_copy_the_whole_vector_ranks_low_is_found_by_its_features_and_ranks_first(
    edited_index: tuple[ImageIndex, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    index, ids = edited_index
    monkeypatch.setattr(search, "DUPLICATE_CANDIDATES", 0)  # only the k asked for from the whole vector
    data = _jpeg(Image.open(IMAGES_DIR / "coffee.jpg"), quality=30)
    ((sha, vector, _),) = index.embed([ImageSource(name="query.jpg", data=data)])
    # The query's features with another photo's logits (what a 64 px copy's blur does to what the model sees):
    # by the whole vector that photo comes first.
    dims = DuplicateSpace.of(resolve_embedding("default"), len(vector)).dims
    rocket = index.store.embeddings([ids["rocket.jpg"]], vector.shape[0])[0]
    crafted = np.concatenate(
        [vector[:dims] / np.linalg.norm(vector[:dims]), rocket[dims:] / np.linalg.norm(rocket[dims:])]
    )
    crafted = (crafted / np.linalg.norm(crafted)).astype(np.float32)
    assert index.search_vector(crafted, k=1)[0].image.id != ids["coffee.jpg"]
    (hit,) = index.search_vector(crafted, k=1, source=QueryImage(sha, data))
    assert hit.image.id == ids["coffee.jpg"] and hit.duplicate


def test_a_copy_shrunk_below_the_near_similarity_is_still_proven_and_ranks_first(
    settings: Settings, embedder: CountingEmbedder
) -> None:
    img = Image.open(IMAGES_DIR / "camera.jpg").convert("RGB")
    w, h = img.size
    scale = 40 / max(w, h)  # shrunk to 40 px and back: the features part says 0.48, under `near` (0.55)
    small = img.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
    query = _jpeg(small.resize((w, h), Image.Resampling.BILINEAR))
    with ImageIndex(settings, embedder) as index:
        results = index.ingest([ImageSource(name=p.name, data=p.read_bytes()) for p in _photos()])
        camera = next(r.id for r in results if r.name == "camera.jpg")
        ((_sha, vector, _),) = index.embed([ImageSource(name="query.jpg", data=query)])
        stored = index.store.embeddings([camera], len(vector))
        space = DuplicateSpace.of(resolve_embedding("default"), len(vector))
        assert space.similarity(vector[None], stored)[0] < space.levels.near
        _sha, hits = index.search_by_image(query, "query.jpg", k=3)
    assert hits[0].image.filename == "camera.jpg" and hits[0].duplicate
    assert not any(h.duplicate for h in hits[1:])


def test_exact_byte_copies_under_two_names_are_a_group(settings: Settings, embedder: CountingEmbedder) -> None:
    data = (IMAGES_DIR / "coins.jpg").read_bytes()
    with ImageIndex(settings, embedder) as index:
        index.ingest([ImageSource(name="coins.jpg", data=data), ImageSource(name="coins copy.jpg", data=data)])
        index.ingest([ImageSource(name="rocket.jpg", data=(IMAGES_DIR / "rocket.jpg").read_bytes())])
        report = index.duplicate_groups(level="exact")
    (group,) = report.groups
    assert group.size == 2 and [m.image.names for m in group.members] == [["coins.jpg", "coins copy.jpg"]]


def test_a_copy_stored_under_a_new_name_shows_in_the_next_grouping(
    settings: Settings, embedder: CountingEmbedder
) -> None:
    data = (IMAGES_DIR / "coins.jpg").read_bytes()
    with ImageIndex(settings, embedder) as index:
        rocket = (IMAGES_DIR / "rocket.jpg").read_bytes()
        index.ingest([ImageSource(name="coins.jpg", data=data), ImageSource(name="rocket.jpg", data=rocket)])
        assert index.duplicate_groups(level="exact").groups == []
        index.ingest([ImageSource(name="coins again.jpg", data=data)])  # no new vector, one new name
        (group,) = index.duplicate_groups(level="exact").groups
    assert group.members[0].image.names == ["coins.jpg", "coins again.jpg"]


def test_an_empty_index_has_no_groups(settings: Settings, embedder: CountingEmbedder) -> None:
    with ImageIndex(settings, embedder) as index:
        assert index.duplicate_groups().groups == []
        assert index.duplicate_groups(threshold=0.5).groups == []


@pytest.mark.parametrize(
    ("level", "threshold", "message"),
    [
        ("nearish", None, "unknown level 'nearish'"),
        (None, 1.5, "between 0.5 and 1"),
        (None, -0.1, "between 0.5 and 1"),
        (None, 0.0, "every two photos of one kind"),
        (None, 0.3, "between 0.5 and 1"),
        ("near", 0.9, "not both"),
    ],
)
def test_bad_levels_and_thresholds_are_refused(
    settings: Settings, embedder: CountingEmbedder, level: str | None, threshold: float | None, message: str
) -> None:
    with ImageIndex(settings, embedder) as index, pytest.raises(InvalidArgument, match=message):
        index.duplicate_groups(level, threshold)


# --- levels per embedding definition --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EMBEDDINGS))
def test_every_embedding_definition_records_ordered_levels(name: str) -> None:
    levels = EMBEDDINGS[name].duplicates
    assert 0 < levels.floor <= levels.near < levels.similar < levels.exact <= 1
    space = DuplicateSpace.of(EMBEDDINGS[name], 2280 if EMBEDDINGS[name].logits_weight else 1280)
    assert space.resolve() == Criterion("near", levels.near) and space.resolve("exact").threshold == levels.exact
    assert space.resolve("near").verified and not space.resolve("similar").verified
    assert space.resolve(threshold=levels.floor) == Criterion(None, levels.floor)
    # The compared part is the pooled features: the first 1280 dimensions for Lite0.
    assert space.dims == 1280
    # A radius on the whole vector never above the threshold on the features part.
    assert space.radius(levels.near) <= levels.near


def test_the_features_part_of_a_stored_vector_is_the_gem_vector() -> None:
    rng = np.random.default_rng(0)
    g, logits = (v / np.linalg.norm(v) for v in (rng.standard_normal(1280), rng.standard_normal(1000)))
    stored = np.concatenate([g, 1.3 * logits]) / np.sqrt(1 + 1.3**2)
    space = DuplicateSpace.of(resolve_embedding("gem3+logits1.3"), 2280)
    np.testing.assert_allclose(space.part(stored.astype(np.float32)), g, atol=1e-6)


# --- no chaining ----------------------------------------------------------------------------------------


def _chain(kind: str) -> tuple[VectorIndex, DuplicateSpace]:
    """A~B and B~C at 0.95, but A and C only 0.805 apart, among unrelated vectors."""
    dim = 64
    angle = np.arccos(0.95)
    basis = np.eye(dim, dtype=np.float32)
    a, b, c = (np.cos(t) * basis[0] + np.sin(t) * basis[1] for t in (0.0, angle, 2 * angle))
    noise = unit_vectors(50, dim, seed=3)
    noise[:, :2] = 0
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    vectors = VectorIndex(IndexMeta("test", dim, kind))
    vectors.add(np.array([1, 2, 3]), np.stack([a, b, c]).astype(np.float32))
    vectors.add(np.arange(100, 150), noise)
    space = DuplicateSpace(dim, dim, 0.0, DuplicateLevels(0.99, 0.9, 0.8))
    return vectors, space


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_groups_do_not_chain_unrelated_images_through_a_middle_one(kind: str) -> None:
    vectors, space = _chain(kind)
    pairs = find_pairs(vectors, space, 0.9)
    assert sorted(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True)) == [(1, 2), (2, 3)]

    def order(ids: object) -> dict[int, int]:
        return {i: i for i in (1, 2, 3)}  # keep the lowest id

    guarded = group_pairs(pairs, vectors, space, 0.9, order)
    assert [(keep, [i for i, _ in members]) for keep, members in guarded] == [(1, [1, 2])]
    single = group_pairs(pairs, vectors, space, 0.9, order, guarded=False)
    assert [sorted(i for i, _ in members) for _, members in single] == [[1, 2, 3]]
    assert min(s for _, s in single[0][1]) == pytest.approx(0.805, abs=1e-3)


def test_a_middle_image_kept_gathers_both_ends() -> None:
    vectors, space = _chain("flat")
    pairs = find_pairs(vectors, space, 0.9)
    groups = group_pairs(pairs, vectors, space, 0.9, lambda ids: {1: 2, 2: 0, 3: 1})
    assert [(keep, sorted(i for i, _ in members)) for keep, members in groups] == [(2, [1, 2, 3])]


@pytest.mark.parametrize("search", ["flat", "hnsw", "cells"])
def test_candidate_pairs_match_an_exact_comparison_of_every_pair(search: str) -> None:
    rng = np.random.default_rng(7)
    centres = unit_vectors(40, 32, seed=1)
    members = np.repeat(centres, 3, axis=0) + rng.normal(0, 0.08, (120, 32)).astype(np.float32)
    members /= np.linalg.norm(members, axis=1, keepdims=True)
    vectors = VectorIndex(IndexMeta("test", 32, "flat" if search == "cells" else search))
    vectors.add(np.arange(1, 121), members.astype(np.float32))
    space = DuplicateSpace(32, 32, 0.0, DuplicateLevels(0.99, 0.9, 0.8))
    a, b, s = find_pairs(vectors, space, 0.9, cells=search == "cells")
    sims = members @ members.T
    expected = {(i + 1, j + 1) for i, j in zip(*np.nonzero(np.triu(sims >= 0.9, k=1)), strict=True)}
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == expected
    np.testing.assert_allclose(s, [sims[i - 1, j - 1] for i, j in zip(a, b, strict=True)], atol=1e-5)


def test_a_pass_joining_cells_leaves_out_removed_images_and_those_not_asked_for() -> None:
    rng = np.random.default_rng(3)
    centres = unit_vectors(60, 48, seed=2)
    members = np.repeat(centres, 2, axis=0) + rng.normal(0, 0.02, (120, 48)).astype(np.float32)
    members /= np.linalg.norm(members, axis=1, keepdims=True)
    vectors = VectorIndex(IndexMeta("test", 48, "hnsw"))
    vectors.add(np.arange(1, 121), members.astype(np.float32))
    space = DuplicateSpace(48, 48, 0.0, DuplicateLevels(0.99, 0.9, 0.8))
    everything = set(zip(*(x.tolist() for x in find_pairs(vectors, space, 0.9, cells=True)[:2]), strict=True))
    assert everything == {(i, i + 1) for i in range(1, 121, 2)}
    vectors.remove(np.array([1, 3]))
    among = set(range(1, 61))
    a, b, _ = find_pairs(vectors, space, 0.9, among=among, cells=True)
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == {(i, i + 1) for i in range(5, 61, 2)}

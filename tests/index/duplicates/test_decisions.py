""" "Not duplicates" decisions and resolved groups: real photos and real edits, on SQLite + FAISS and on
PostgreSQL + Milvus; a decision holds at every level and threshold, across restarts, re-ingests, the trash,
purges and rebuilds."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from index.config import Settings
from index.duplicates import DuplicateReport, find_pairs, group_pairs
from index.duplicates.decisions import Decisions, load_decisions
from index.errors import ImageInTrash, InvalidArgument, UnknownReference
from index.pipeline import ImageSource
from index.rebuild import rebuild_index
from index.service import ImageIndex
from tests.conftest import BACKENDS, IMAGES_DIR, CountingEmbedder
from tests.index.duplicates.test_finder import _chain, edits_of

LEVELS = [{"level": "exact"}, {"level": "near"}, {"level": "similar"}, {"threshold": 0.9}, {"threshold": 0.5}]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Decisions live in the metadata store and act on the vector stores: every test runs on both."""
    return str(request.param)


def photo_sources() -> list[ImageSource]:
    """The astronaut with four edited copies, the rocket with two, and the coffee alone."""
    astronaut, rocket = edits_of(IMAGES_DIR / "astronaut.jpg"), edits_of(IMAGES_DIR / "rocket.jpg")
    sources = [ImageSource.from_path(IMAGES_DIR / name) for name in ("astronaut.jpg", "rocket.jpg", "coffee.jpg")]
    sources += [
        ImageSource(name=f"astronaut__{e}.jpg", data=astronaut[e]) for e in ("crop", "small", "mirror", "bright")
    ]
    sources += [ImageSource(name=f"rocket__{e}.jpg", data=rocket[e]) for e in ("small", "recompress")]
    return sources


@pytest.fixture
def photos(settings: Settings, embedder: CountingEmbedder) -> Iterator[tuple[ImageIndex, dict[str, int]]]:
    with ImageIndex(settings, embedder) as index:
        results = index.ingest(photo_sources())
        assert {r.status for r in results} == {"added"}
        yield index, {r.name: r.id for r in results if r.id is not None}


def together(report: DuplicateReport, a: int, b: int) -> bool:
    """Whether one group has `a` and `b` as its kept image and a copy of it (either way round)."""
    return any({a, b} <= {m.image.id for m in g.members} and g.keep in (a, b) for g in report.groups)


def reopen(index: ImageIndex, embedder: CountingEmbedder) -> ImageIndex:
    index.close()
    return ImageIndex(index.settings, embedder)


def test_dismissed_images_are_never_a_pair_at_any_level_or_threshold(
    photos: tuple[ImageIndex, dict[str, int]],
) -> None:
    index, ids = photos
    astronaut, mirror, crop = ids["astronaut.jpg"], ids["astronaut__mirror.jpg"], ids["astronaut__crop.jpg"]
    assert all(together(index.duplicate_groups(**level), astronaut, mirror) for level in LEVELS[1:])
    decision = index.dismiss_duplicates([mirror, astronaut])
    assert {i.id for i in decision.images} == {astronaut, mirror} and len(decision.sha256s) == 2
    for level in LEVELS:
        report = index.duplicate_groups(**level)
        assert not together(report, astronaut, mirror), level
        for group in report.groups:  # no kept image has a copy a decision sets apart from it
            assert all(
                m.image.id == group.keep or {m.image.id, group.keep} != {astronaut, mirror} for m in group.members
            )
        # The other copies are still found.
        if "level" in level and level["level"] != "exact":
            assert together(report, astronaut, crop), level
        one = {m.image.id for g in index.duplicates_of(astronaut, **level).groups for m in g.members}
        assert mirror not in one and (astronaut in one or not one)
        assert astronaut not in {m.image.id for g in index.duplicates_of(mirror, **level).groups for m in g.members[1:]}


def test_a_decision_outlives_a_restart_a_reingest_the_trash_a_purge_and_a_rebuild(
    photos: tuple[ImageIndex, dict[str, int]], embedder: CountingEmbedder
) -> None:
    index, ids = photos
    rocket, small = ids["rocket.jpg"], ids["rocket__small.jpg"]
    decision = index.dismiss_duplicates([rocket, small])
    index = reopen(index, embedder)
    try:
        assert not together(index.duplicate_groups(level="similar"), rocket, small)
        # The same bytes again, under another name: still the same image, still apart.
        small_bytes = index.content(small)[1]
        assert index.ingest([ImageSource(name="rocket again.jpg", data=small_bytes)])[0].status == "exists"
        assert not together(index.duplicate_groups(level="similar"), rocket, small)
        # To the trash and back.
        index.delete(small)
        index.restore(small)
        assert not together(index.duplicate_groups(level="near"), rocket, small)
        # Deleted for good, then stored again: a new id, the same content, still apart.
        index.delete(small)
        index.purge(small)
        again = index.ingest([ImageSource(name="rocket_small.jpg", data=small_bytes)])[0]
        assert again.status == "added" and again.id is not None and again.id != small
        assert not together(index.duplicate_groups(level="near"), rocket, again.id)
        assert not any(m.image.id == again.id for g in index.duplicates_of(rocket).groups for m in g.members)
    finally:
        index.close()
    rebuild_index(index.settings)
    with ImageIndex(index.settings, embedder) as rebuilt:
        assert not together(rebuilt.duplicate_groups(level="near"), rocket, again.id)
        assert rebuilt.undo_dismissal(decision.id).id == decision.id
        assert together(rebuilt.duplicate_groups(level="near"), rocket, again.id)
        with pytest.raises(UnknownReference, match=f"no decision with id {decision.id}"):
            rebuilt.undo_dismissal(decision.id)


def test_a_cached_grouping_is_not_served_after_a_decision_or_its_undo(
    photos: tuple[ImageIndex, dict[str, int]],
) -> None:
    index, ids = photos
    astronaut, small = ids["astronaut.jpg"], ids["astronaut__small.jpg"]
    first = index.duplicate_groups(level="near")
    assert index.duplicate_groups(level="near").groups == first.groups  # served from the cache
    decision = index.dismiss_duplicates([astronaut, small])
    assert not together(index.duplicate_groups(level="near"), astronaut, small)
    index.undo_dismissal(decision.id)
    assert index.duplicate_groups(level="near").groups == first.groups


def test_decisions_are_listed_newest_first_with_their_images(photos: tuple[ImageIndex, dict[str, int]]) -> None:
    index, ids = photos
    first = index.dismiss_duplicates([ids["astronaut.jpg"], ids["astronaut__crop.jpg"]])
    second = index.dismiss_duplicates([ids["rocket.jpg"], ids["rocket__small.jpg"], ids["rocket__recompress.jpg"]])
    total, decisions = index.dismissals()
    assert total == 2 and [d.id for d in decisions] == [second.id, first.id]
    assert sorted(i.filename for i in decisions[0].images) == [
        "rocket.jpg",
        "rocket__recompress.jpg",
        "rocket__small.jpg",
    ]
    assert index.dismissals(1, 1)[1][0].id == first.id


@pytest.mark.parametrize(
    ("names", "error", "message"),
    [
        (["astronaut.jpg"], InvalidArgument, "at least two"),
        ([], InvalidArgument, "at least two"),
        (["astronaut.jpg", "astronaut.jpg"], InvalidArgument, "named twice"),
        (["astronaut.jpg", 999_999], UnknownReference, "999999"),
    ],
)
def test_a_bad_decision_is_refused_and_changes_nothing(
    photos: tuple[ImageIndex, dict[str, int]], names: list[str | int], error: type[Exception], message: str
) -> None:
    index, ids = photos
    before = index.duplicate_groups(level="near").groups
    with pytest.raises(error, match=message):
        index.dismiss_duplicates([ids[n] if isinstance(n, str) else n for n in names])
    assert index.dismissals() == (0, [])
    assert index.duplicate_groups(level="near").groups == before


def test_resolving_a_group_trashes_the_copies_and_the_kept_image_keeps_their_names(
    photos: tuple[ImageIndex, dict[str, int]], embedder: CountingEmbedder
) -> None:
    index, ids = photos
    rocket, small, recompress = ids["rocket.jpg"], ids["rocket__small.jpg"], ids["rocket__recompress.jpg"]
    (group,) = [g for g in index.duplicate_groups(level="near").groups if g.keep == rocket]
    assert {m.image.id for m in group.members} == {rocket, small, recompress}
    kept, trashed = index.resolve_duplicates(rocket, [small, recompress])
    assert {t.id for t in trashed} == {small, recompress} and all(t.trashed_at for t in trashed)
    assert kept.names == ["rocket.jpg"]
    assert sorted(r.name for r in kept.replaced) == ["rocket__recompress.jpg", "rocket__small.jpg"]
    # The group is gone, and the names recorded on the kept image do not make it a group of byte copies.
    for level in LEVELS[:3]:
        assert all(rocket not in {m.image.id for m in g.members} for g in index.duplicate_groups(**level).groups)
    assert index.list_images(name="rocket__small")[1] == [index.get(rocket)]
    index = reopen(index, embedder)
    try:
        assert [r.name for r in index.get(rocket).replaced] == ["rocket__small.jpg", "rocket__recompress.jpg"]
        # Undone by restoring the copies: the group is back.
        index.restore(small)
        index.restore(recompress)
        (again,) = [g for g in index.duplicate_groups(level="near").groups if g.keep == rocket]
        assert {m.image.id for m in again.members} == {rocket, small, recompress}
    finally:
        index.close()


@pytest.mark.parametrize(
    ("keep", "remove", "error"),
    [
        ("rocket.jpg", [], InvalidArgument),
        ("rocket.jpg", ["rocket.jpg"], InvalidArgument),
        ("rocket.jpg", ["rocket__small.jpg", "rocket__small.jpg"], InvalidArgument),
        ("rocket.jpg", ["rocket__small.jpg", 999_999], UnknownReference),
        (999_999, ["rocket__small.jpg"], UnknownReference),
        ("rocket.jpg", ["coffee.jpg", "in trash"], ImageInTrash),
    ],
)
def test_resolving_with_bad_ids_is_refused_and_changes_nothing(
    photos: tuple[ImageIndex, dict[str, int]], keep: str | int, remove: list[str | int], error: type[Exception]
) -> None:
    index, ids = photos
    ids["in trash"] = ids["astronaut__bright.jpg"]
    index.delete(ids["in trash"])
    live = index.store.ids().tolist()
    with pytest.raises(error):
        index.resolve_duplicates(
            ids[keep] if isinstance(keep, str) else keep, [ids[r] if isinstance(r, str) else r for r in remove]
        )
    assert index.store.ids().tolist() == live == index.vectors.ids().tolist()
    assert index.get(ids["rocket.jpg"]).replaced == []


# --- the filter itself ----------------------------------------------------------------------------------------


def test_dismissed_pairs_are_dropped_from_candidate_pairs_and_never_kept_together() -> None:
    vectors, space = _chain("flat")  # A~B and B~C at 0.95, A and C 0.805 apart
    pairs = find_pairs(vectors, space, 0.8)
    decisions = Decisions({1: frozenset({7}), 2: frozenset({7}), 3: frozenset({8})})
    a, b, _ = decisions.drop_dismissed(pairs)
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [(1, 3), (2, 3)]
    assert decisions.apart(1, 2) and decisions.apart(2, 1) and not decisions.apart(1, 3) and not decisions.apart(5, 6)
    # The middle image kept would take both ends; set apart from one of them, it takes only the other.
    groups = group_pairs(pairs, vectors, space, 0.8, lambda ids: {1: 2, 2: 0, 3: 1}, apart=decisions.apart)
    assert [(keep, sorted(i for i, _ in members)) for keep, members in groups] == [(2, [2, 3])]
    empty = Decisions({})
    assert all(np.array_equal(x, y) for x, y in zip(empty.drop_dismissed(pairs), pairs, strict=True))


def test_decisions_name_the_images_stored_now(photos: tuple[ImageIndex, dict[str, int]]) -> None:
    index, ids = photos
    decision = index.dismiss_duplicates([ids["coffee.jpg"], ids["rocket.jpg"]])
    assert load_decisions(index.store).by_image == {
        ids["coffee.jpg"]: frozenset({decision.id}),
        ids["rocket.jpg"]: frozenset({decision.id}),
    }

"""Words as labels: class names, synonyms and the WordNet words above classes."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from index.errors import InvalidArgument
from index.model.registry import imagenet_labels
from index.model.words import WORDS_FILE, vocabulary
from index.search import resolve_label

WORDNET = Path("/usr/share/wordnet")
ROOT = Path(__file__).parents[3]


def names(label: str) -> set[str]:
    """The first name of each class `label` resolves to."""
    return {imagenet_labels()[i].split(",")[0] for i in resolve_label(label)}


def test_dog_names_the_118_breeds_and_no_cat() -> None:
    dogs = names("dog")
    assert len(resolve_label("dog")) == 118
    assert {"golden retriever", "pug", "Chihuahua", "Bernese mountain dog"} <= dogs
    assert "tabby" not in dogs and "hotdog" not in dogs and "timber wolf" not in dogs


def test_cat_names_domestic_wild_and_big_cats() -> None:
    cats = names("cat")
    assert {"tabby", "Egyptian cat", "Persian cat", "lynx", "lion", "tiger"} <= cats
    assert len(cats) == 13
    assert names("domestic cat") == {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def test_bird_car_and_others_name_what_they_contain() -> None:
    assert "goldfinch" in names("bird")
    assert len(resolve_label("bird")) == 59
    assert {"sports car", "cab", "jeep"} <= names("car")
    assert not names("car") & names("dog")
    assert {"tench", "goldfish"} <= names("fish")
    assert "king snake" in names("snake")
    assert "baboon" in names("monkey")
    assert "tow truck" in names("truck")
    assert names("poodle") == {"toy poodle", "miniature poodle", "standard poodle"}


def test_words_ignore_case_and_take_plurals() -> None:
    assert resolve_label("DOG") == resolve_label("dogs") == resolve_label(" Dogs ") == resolve_label("dog")
    assert resolve_label("wolves") == resolve_label("wolf")  # an irregular plural, from WordNet's noun.exc
    assert resolve_label("buses") == resolve_label("bus")


def test_a_class_name_or_synonym_still_means_just_that_class() -> None:
    assert names("tabby") == names("tabby, tabby cat") == names("Tabby Cat") == {"tabby"}
    assert resolve_label("crane") == {134, 517}  # the bird and the machine
    # WordNet puts airliners under 'plane' too, but the class called so is the carpenter's.
    assert names("plane") == {"plane"}


def test_an_unknown_word_suggests_close_ones() -> None:
    with pytest.raises(InvalidArgument, match=r"no ImageNet class is called 'dgo'.*'dog'"):
        resolve_label("dgo")
    with pytest.raises(InvalidArgument, match="no ImageNet class is called 'xyzzy'"):
        resolve_label("xyzzy")


def test_autocomplete_lists_words_by_prefix_with_their_class_counts() -> None:
    words = {w.word: w.classes for w in vocabulary().starting("do", 1000)}
    assert words["dog"] == 118 and words["doberman"] == 1
    assert all(any(part.startswith("do") for part in w.split()) for w in words)
    first = [w for w in words if w.startswith("do")]
    assert list(words)[: len(first)] == sorted(first)  # those that start so come first, alphabetical
    later = [w.word for w in vocabulary().starting("retriever", 10)]
    assert later[0] == "retriever" and "golden retriever" in later
    assert len(vocabulary().starting("", 7)) == 7


def test_the_words_file_ships_with_the_package() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["index.model"]
    relative = WORDS_FILE.relative_to(ROOT / "index" / "model").as_posix()
    assert any(fnmatch.fnmatch(relative, g) for g in globs)


@pytest.mark.skipif(not (WORDNET / "data.noun").exists(), reason="WordNet 3.0 is not installed (wordnet-base)")
def test_the_words_file_is_what_wordnet_gives(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    from index.model.data.make_imagenet_words import main

    main(WORDNET, tmp_path / "words.json")
    assert (tmp_path / "words.json").read_text() == WORDS_FILE.read_text()

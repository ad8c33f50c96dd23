"""Words as labels: every ImageNet class a word names, from the class names and the WordNet 3.0 hierarchy.

`imagenet_words.json` (written once by `data/make_imagenet_words.py`) maps each word of a class's WordNet synset
or of one of its ancestors to those classes: "dog" to the 118 breeds, "cat" to the domestic cats, wildcats and big
cats, "bird" to the 59 birds. A word that names a class in `imagenet_labels.txt` (its full name or one of its
comma-separated synonyms) keeps meaning exactly that class, as before words were known: "crane" is the bird and the
machine, "plane" the carpenter's tool.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from index.model.registry import imagenet_labels

WORDS_FILE = Path(__file__).parent / "data" / "imagenet_words.json"


@dataclass(frozen=True)
class LabelWord:
    word: str
    classes: int  # how many ImageNet classes it names


@dataclass(frozen=True)
class Vocabulary:
    by_name: dict[str, frozenset[int]]  # a class's full name -> that class
    words: dict[str, frozenset[int]]  # a synonym or WordNet word, lower case -> the classes it names
    plurals: dict[str, str]  # an irregular plural -> its singular, a word

    def classes(self, label: str) -> frozenset[int]:
        """The classes `label` names (case-insensitive; a plural of a word works too); empty for none."""
        wanted = label.strip().lower()
        for candidate in (wanted, *_singulars(wanted, self.plurals)):
            found = self.by_name.get(candidate) or self.words.get(candidate)
            if found:
                return found
        return frozenset()

    def close_to(self, label: str, count: int = 5) -> list[str]:
        """Words spelled like `label`, the closest first."""
        return difflib.get_close_matches(label.strip().lower(), self.words, n=count)

    def starting(self, prefix: str, limit: int) -> list[LabelWord]:
        """Words that start with `prefix`, then those with a later word that does, each group alphabetical."""
        wanted = " ".join(prefix.strip().lower().split())
        first = sorted(w for w in self.words if w.startswith(wanted))
        later = sorted(
            w for w in self.words if not w.startswith(wanted) and any(p.startswith(wanted) for p in w.split()[1:])
        )
        return [LabelWord(w, len(self.words[w])) for w in (first + later)[:limit]]


def _singulars(word: str, irregular: dict[str, str]) -> list[str]:
    """What `word` may be the plural of: an irregular plural's singular, or the regular -ies, -es and -s."""
    out = [irregular[word]] if word in irregular else []
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s"):
        out.append(word[:-1])
    return out


@cache
def vocabulary() -> Vocabulary:
    """The label words, read once."""
    data = json.loads(WORDS_FILE.read_text(encoding="utf-8"))
    words = {word: frozenset(classes) for word, classes in data["classes"].items()}
    by_name: dict[str, set[int]] = {}
    synonyms: dict[str, set[int]] = {}
    for i, name in enumerate(imagenet_labels()):
        by_name.setdefault(name.lower(), set()).add(i)
        for synonym in name.split(","):
            synonyms.setdefault(synonym.strip().lower(), set()).add(i)
    # A class's own name keeps meaning just the classes called so, though WordNet may put others under it.
    words.update({word: frozenset(classes) for word, classes in synonyms.items()})
    return Vocabulary(
        by_name={name: frozenset(classes) for name, classes in by_name.items()},
        words=words,
        plurals=dict(data["plurals"]),
    )

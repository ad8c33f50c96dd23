"""Write imagenet_words.json: each word WordNet 3.0 gives an ImageNet class or one of its ancestors -> those classes.

Run once, where WordNet 3.0 and timm are installed (Debian's `wordnet-base` puts the database in
/usr/share/wordnet), from the repository root:

    python index/model/data/make_imagenet_words.py [/usr/share/wordnet]

An ImageNet wnid nXXXXXXXX is the WordNet 3.0 noun synset at byte offset XXXXXXXX of data.noun. A synset's words
(its lemmas, lower case, underscores as spaces) name every class at or below it through hypernyms (`@`) and
instance hypernyms (`@i`): "dog" (dog.n.01) names the 118 breeds, "cat" names the domestic cats and the wildcats
(cat.n.01, "true cat") and the big cats (big_cat.n.01, whose words are "big cat" and "cat"). The irregular plurals
of noun.exc whose singular is one of those words come along, so "wolves" finds the wolves. The service reads the
file it writes and never needs WordNet.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from pathlib import Path

from timm.data import ImageNetInfo

OUT = Path(__file__).parent / "imagenet_words.json"


def read_synsets(wordnet: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Noun synset offset -> (its words, its hypernyms' offsets)."""
    synsets: dict[str, tuple[list[str], list[str]]] = {}
    for line in (wordnet / "data.noun").read_text(encoding="utf-8").splitlines():
        if line.startswith("  "):  # the licence
            continue
        fields = line.split(" | ")[0].split()
        offset, count = fields[0], int(fields[3], 16)
        words = [fields[4 + 2 * i].replace("_", " ").lower() for i in range(count)]
        rest = fields[4 + 2 * count :]
        pointers = int(rest[0])
        hypernyms = [
            rest[1 + 4 * i + 1] for i in range(pointers) if rest[1 + 4 * i] in ("@", "@i") and rest[1 + 4 * i + 2] == "n"
        ]
        synsets[offset] = (words, hypernyms)
    return synsets


def class_words(synsets: dict[str, tuple[list[str], list[str]]], wnid: str) -> set[str]:
    """The words of the class's synset and of all its ancestors."""
    seen: set[str] = set()
    todo = deque([wnid[1:]])
    while todo:
        offset = todo.popleft()
        if offset not in seen:
            seen.add(offset)
            todo.extend(synsets[offset][1])
    return {word for offset in seen for word in synsets[offset][0]}


def main(wordnet: Path, out: Path = OUT) -> None:
    synsets = read_synsets(wordnet)
    info = ImageNetInfo()
    classes: dict[str, list[int]] = {}
    for index in range(1000):
        for word in class_words(synsets, info.index_to_label_name(index)):
            classes.setdefault(word, []).append(index)
    plurals = {}
    for line in (wordnet / "noun.exc").read_text(encoding="utf-8").splitlines():
        plural, singular = (w.replace("_", " ").lower() for w in line.split()[:2])
        if singular in classes and plural not in classes:
            plurals[plural] = singular
    source = "WordNet 3.0 noun hierarchy (data.noun, noun.exc); written by make_imagenet_words.py"
    # One word per line, so that a regenerated file diffs readably.
    lines = [f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in sorted(classes.items())]
    text = (
        "{\n"
        f'"source": {json.dumps(source)},\n'
        '"classes": {\n' + ",\n".join(lines) + "\n},\n"
        f'"plurals": {json.dumps(dict(sorted(plurals.items())), separators=(",", ":"))}\n'
        "}\n"
    )
    json.loads(text)  # it parses
    out.write_text(text, encoding="utf-8")
    print(f"{len(classes)} words, {len(plurals)} irregular plurals -> {out} ({len(text.encode()):,} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet"))

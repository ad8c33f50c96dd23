"""Duplicate levels measured on distinct photos, separate captures of one object and edited copies.

    python -m tests.benchmarks.duplicates_eval [--limit N] [--seed S] [--sweep] [--search]

The set: the shared ImageNet sample (1000 distinct photos), the shared multiview set (500 photos, 4 separate
captures of each of 125 objects: none of those pairs is a copy) and edited copies made here of both, the
edits taken in turn with parameters drawn from the seed: the `near` level's list (resize, JPEG quality 15 and
30-70, a downscale to 64 px and back, 5-15 % and 15-40 % crops, mirror, a small rotation, mirror plus 15
degrees, colour and brightness changes, greyscale, text, a logo, a coloured block over a corner, a border, a
screenshot of it), and the `exact` level's (the same pixels re-saved as PNG; the same JPEG bytes with EXIF
added). Each ImageNet photo gets one edit, each multiview photo two (so copies of one capture meet the other
captures of their object).

Everything goes through the library as the API and the CLI use it: the set is ingested into an index (kept
in `bench-results/duplicates-eval/`, so a rerun embeds nothing), then `ImageIndex.duplicate_groups` at each
level. Every pair of images in one group is a reported pair, sorted by kind — copies (one capture),
separate captures (one object, two captures), distinct photos — and the tables give per level the reported
pairs of each kind, the pair precision, the recall of copies (for `exact`: of same-pixel copies) per edit, and
for `similar` the share of the multiview same-object pairs found. `--sweep` also records, for every candidate
pair, the verification's residual flow, and prints precision and recall against the flow threshold (the
calibration). `--search` measures copies first in search: each edited copy of a photo searched (as an upload
would be, not stored) against an index of the originals — near-duplicate recall@1 — and super-class
precision@10 of the originals by reference. Tables on stdout; JSON in `bench-results/duplicates-eval.json`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import struct
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from index.config import Settings
from index.duplicates import LEVELS, verification
from index.duplicates.candidates import find_pairs
from index.model.engines.base import cpu_flags
from index.pipeline import ImageSource
from index.search import QueryImage
from index.service import ImageIndex
from tests.benchmarks.evaluate import DEFAULT_PHOTOS, PRECISION_AT, RESULTS_DIR, encode, load_photos, super_class

MULTIVIEW = DEFAULT_PHOTOS.parent / "multiview"
NEAR_EDITS = (
    "resize",
    "jpeg15",
    "recompress",
    "down64",
    "crop_small",
    "crop",
    "mirror",
    "rotate",
    "mirror_rot15",
    "colour",
    "brightness",
    "greyscale",
    "text",
    "logo",
    "block",
    "border",
    "screenshot",
)
EXACT_EDITS = ("png", "exif")
SEED = 20261202
CACHE_DIR = RESULTS_DIR / "duplicates-eval"
KINDS = ("copies", "separate captures", "distinct photos")
WANTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "fma")


def flags() -> str:
    return " ".join(f for f in WANTED_FLAGS if f in cpu_flags())


@dataclass(frozen=True)
class Item:
    name: str
    data: bytes
    capture: int  # one capture: copies of each other
    obj: int  # one object: copies, or separate captures
    edit: str | None  # None for a photo as it was taken
    source: str  # "imagenet" or "multiview"
    group: str | None = None  # the ImageNet super-class, for search precision


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    return encode(img.convert("RGB") if img.mode not in ("RGB", "L") else img, "JPEG", quality=quality)


def _with_exif(data: bytes) -> bytes:
    """The same JPEG bytes with an EXIF segment (a camera make and a date) spliced in after SOI: same pixels."""
    exif = Image.Exif()
    exif[0x010F] = "imgsim test camera"
    exif[0x0132] = "2026:12:02 12:00:00"
    payload = b"Exif\x00\x00" + exif.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def edit_photo(data: bytes, edit: str, rng: np.random.Generator) -> bytes:
    """One copy of `data` made by `edit`, its parameters drawn from `rng`."""
    if edit == "exif":
        return _with_exif(data) if data[:2] == b"\xff\xd8" else data
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    w, h = img.size
    if edit == "png":
        return encode(img, "PNG")
    if edit == "resize":
        s = rng.uniform(0.3, 0.7)
        return _jpeg(img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS), 88)
    if edit == "jpeg15":
        return _jpeg(img, 15)
    if edit == "recompress":
        return _jpeg(img, int(rng.integers(30, 70)))
    if edit == "down64":
        s = 64 / max(w, h)
        small = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
        return _jpeg(small.resize((w, h), Image.Resampling.BILINEAR))
    if edit in ("crop_small", "crop"):
        lo, hi = (0.85, 0.95) if edit == "crop_small" else (0.6, 0.85)
        cw, ch = round(w * rng.uniform(lo, hi)), round(h * rng.uniform(lo, hi))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return _jpeg(img.crop((left, top, left + cw, top + ch)))
    if edit == "mirror":
        return _jpeg(ImageOps.mirror(img))
    if edit == "rotate":
        angle = float(rng.uniform(3, 12) * rng.choice([-1, 1]))
        return _jpeg(img.rotate(angle, Image.Resampling.BICUBIC))
    if edit == "mirror_rot15":
        angle = float(15 * rng.choice([-1, 1]))
        return _jpeg(ImageOps.mirror(img).rotate(angle, Image.Resampling.BICUBIC, expand=bool(rng.random() < 0.5)))
    if edit == "colour":
        out = ImageEnhance.Color(img).enhance(float(rng.uniform(0.3, 1.8)))
        arr = np.asarray(out).astype(np.float32) * rng.uniform(0.8, 1.2, 3)
        return _jpeg(Image.fromarray(arr.clip(0, 255).astype(np.uint8)))
    if edit == "brightness":
        out = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.6, 1.5)))
        return _jpeg(ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.7, 1.3))))
    if edit == "greyscale":
        return _jpeg(img.convert("L"))
    if edit == "text":
        out = img.copy()
        draw = ImageDraw.Draw(out)
        band = round(h * rng.uniform(0.1, 0.18))
        top = 0 if rng.random() < 0.5 else h - band
        draw.rectangle((0, top, w, top + band), fill=(0, 0, 0))
        draw.text((8, top + band // 4), "SAMPLE COPYRIGHT 2026 " * 4, fill=(255, 255, 255))
        return _jpeg(out)
    if edit == "logo":
        out = img.copy()
        draw = ImageDraw.Draw(out)
        side = round(min(w, h) * rng.uniform(0.1, 0.2))
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        draw.ellipse((x, y, x + side, y + side), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw.text((x + side // 4, y + side // 3), "LOGO", fill=(255, 255, 255))
        return _jpeg(out)
    if edit == "block":  # a coloured block over a corner
        out = img.copy()
        draw = ImageDraw.Draw(out)
        bw, bh = round(w * rng.uniform(0.2, 0.33)), round(h * rng.uniform(0.2, 0.33))
        corner = int(rng.integers(0, 4))
        x, y = (0 if corner % 2 == 0 else w - bw), (0 if corner < 2 else h - bh)
        draw.rectangle((x, y, x + bw, y + bh), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        return _jpeg(out)
    if edit == "border":
        b = round(min(w, h) * rng.uniform(0.04, 0.12))
        return _jpeg(ImageOps.expand(img, border=b, fill=tuple(int(c) for c in rng.integers(0, 256, 3))))
    if edit == "screenshot":  # the photo shown in a viewer's window, at some zoom, saved as PNG
        cw, ch = int(rng.choice([1280, 1440, 1920])), int(rng.choice([800, 900, 1080]))
        canvas = Image.new("RGB", (cw, ch), (240, 240, 240))
        draw = ImageDraw.Draw(canvas)
        draw.rectangle((0, 0, cw, 40), fill=(50, 50, 60))
        draw.text((10, 12), "photo.jpg - Image Viewer", fill=(255, 255, 255))
        s = min((cw - 100) / w, (ch - 140) / h) * rng.uniform(0.5, 1.0)
        shown = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
        x, y = int(rng.integers(20, cw - shown.width - 19)), int(rng.integers(60, ch - shown.height - 19))
        canvas.paste(shown, (x, y))
        draw.text((x, y + shown.height + 4), f"{w} x {h}  {round(100 * s)}%", fill=(0, 0, 0))
        return encode(canvas, "PNG")
    raise ValueError(f"unknown edit {edit!r}")


def build_set(limit: int, seed: int) -> list[Item]:
    """The originals (ImageNet sample, multiview) and their edited copies, the same bytes for the same seed."""
    photos = load_photos(DEFAULT_PHOTOS, limit)
    items = [
        Item(p.name, p.data, n, n, None, "imagenet", super_class(p.class_index) if p.class_index is not None else None)
        for n, p in enumerate(photos)
    ]
    views = sorted(MULTIVIEW.glob("ukbench*.jpg"))
    if limit:
        views = views[: max(4, (limit // 2) // 4 * 4)]
    base = 1_000_000
    for p in views:
        n = int(p.stem.removeprefix("ukbench"))
        items.append(Item(p.name, p.read_bytes(), base + n, base + n // 4, None, "multiview"))
    originals = list(items)
    out = list(originals)
    turn = 0
    for j, it in enumerate(originals):
        for r in range(2 if it.source == "multiview" else 1):
            edit = NEAR_EDITS[turn % len(NEAR_EDITS)]
            turn += 1
            data = edit_photo(it.data, edit, np.random.default_rng([seed, j, r]))
            out.append(Item(f"{Path(it.name).stem}__{edit}.{_suffix(data)}", data, it.capture, it.obj, edit, it.source))
        if j % 10 == 0:  # same-pixel copies of a tenth of the originals, for `exact`
            edit = EXACT_EDITS[(j // 10) % len(EXACT_EDITS)]
            data = edit_photo(it.data, edit, np.random.default_rng([seed, j, 9]))
            out.append(Item(f"{Path(it.name).stem}__{edit}.{_suffix(data)}", data, it.capture, it.obj, edit, it.source))
    return out


def _suffix(data: bytes) -> str:
    return "png" if data[:4] == b"\x89PNG" else "jpg"


def open_cached(items: Sequence[Item], seed: int, name: str = "all") -> tuple[ImageIndex, list[int]]:
    """An index in the cache directory holding `items` (embedding only what is new); ids in item order."""
    folder = CACHE_DIR / f"{name}-{seed}-{len(items)}"
    index = ImageIndex(Settings(data_dir=folder, index_kind="flat"))
    started = time.perf_counter()
    results = index.ingest([ImageSource(name=i.name, data=i.data) for i in items])
    added = sum(r.status == "added" for r in results)
    print(f"  {name}: {added} embedded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    missing = [r for r in results if r.id is None]
    if missing:
        raise SystemExit(f"{len(missing)} images were not ingested, e.g. {missing[0].name}: {missing[0].error}")
    return index, [int(r.id) for r in results if r.id is not None]


# --- pairs by kind --------------------------------------------------------------------------------------


def kind_of(a: Item, b: Item) -> str:
    if a.capture == b.capture:
        return "copies"
    return "separate captures" if a.obj == b.obj else "distinct photos"


def same_pixels(a: Item, b: Item) -> bool:
    """The `exact` level's truth: one capture, and neither edited beyond its encoding or metadata."""
    return a.capture == b.capture and {a.edit, b.edit} <= {None, *EXACT_EDITS}


def true_pairs(items: Sequence[Item]) -> tuple[set[tuple[int, int]], set[tuple[int, int]], set[tuple[int, int]]]:
    """Positions (i < j) of every copy pair, every same-pixel pair, and every same-object multiview original pair."""
    by_capture: dict[int, list[int]] = defaultdict(list)
    by_object: dict[int, list[int]] = defaultdict(list)
    for n, it in enumerate(items):
        by_capture[it.capture].append(n)
        if it.source == "multiview" and it.edit is None:
            by_object[it.obj].append(n)
    copies = {(i, j) for m in by_capture.values() for i in m for j in m if i < j}
    exact = {(i, j) for i, j in copies if same_pixels(items[i], items[j])}
    views = {(i, j) for m in by_object.values() for i in m for j in m if i < j}
    return copies, exact, views


def level_quality(
    index: ImageIndex, ids: Sequence[int], items: Sequence[Item], level: str, truth: tuple[set[Any], ...]
) -> dict[str, Any]:
    """Reported pairs at one level, by kind; precision; recall of copies per edit; same-object recall."""
    copies, exact, views = truth
    position = {image_id: n for n, image_id in enumerate(ids)}
    started = time.perf_counter()
    report = index.duplicate_groups(level)
    seconds = time.perf_counter() - started
    reported: set[tuple[int, int]] = set()
    for group in report.groups:
        members = sorted(position[m.image.id] for m in group.members if m.image.id in position)
        reported.update((i, j) for n, i in enumerate(members) for j in members[n + 1 :])
    by_kind = Counter(kind_of(items[i], items[j]) for i, j in reported)
    positives = exact if level == "exact" else copies
    hits = reported & positives
    false = [(i, j) for i, j in reported if (i, j) not in positives]
    per_edit: dict[str, list[bool]] = defaultdict(list)
    for i, j in positives:
        edit = items[j].edit or items[i].edit or "none"
        if items[i].edit is None or items[j].edit is None:  # original against its copy
            per_edit[edit].append((i, j) in reported)
    out: dict[str, Any] = {
        "level": level,
        "threshold": report.threshold,
        "seconds": seconds,
        "groups": len(report.groups),
        "reported_pairs": len(reported),
        "pairs_by_kind": {k: by_kind.get(k, 0) for k in KINDS},
        "false_pairs": len(false),
        "false_examples": [(items[i].name, items[j].name) for i, j in false[:12]],
        "pair_precision": len(hits) / len(reported) if reported else 1.0,
        "recall": len(hits) / len(positives) if positives else 1.0,
        "recall_of": "same-pixel copies" if level == "exact" else "copies",
        "recall_by_edit": {e: float(np.mean(v)) for e, v in sorted(per_edit.items())},
        "same_object_recall": len(reported & views) / len(views) if views else None,
    }
    return out


# --- calibration: the residual flow of every candidate pair -----------------------------------------------


def sweep(index: ImageIndex, ids: Sequence[int], items: Sequence[Item]) -> dict[str, Any]:
    """The verification's evidence for every candidate pair at `near`, and precision/recall against the flow."""
    space = index.duplicates.space
    a, b, sims = find_pairs(index.vectors, space, space.levels.near)
    position = {image_id: n for n, image_id in enumerate(ids)}
    infos = {i: index.get(int(i)) for i in set(a.tolist()) | set(b.tolist())}
    started = time.perf_counter()
    evidence = index.verifier.copies([(infos[x].sha256, infos[y].sha256) for x, y in zip(a, b, strict=True)])
    per_pair = (time.perf_counter() - started) / max(1, len(a))
    rows = []
    for x, y, s, e in zip(a.tolist(), b.tolist(), sims.tolist(), evidence, strict=True):
        i, j = sorted((position[x], position[y]))
        rows.append((kind_of(items[i], items[j]), s, e))
    total_copies = len(true_pairs(items)[0])
    curve = []
    for limit in np.round(np.arange(0.10, 0.61, 0.05), 2):
        spread_ok = [e.spread is None or e.spread >= verification.MIN_SPREAD for _k, _s, e in rows]
        ok = Counter(
            k
            for (k, _s, e), spread in zip(rows, spread_ok, strict=True)
            if e.flow_px is not None and e.flow_px <= limit and spread
        )
        found = ok["copies"]
        reported = sum(ok.values())
        curve.append(
            {
                "max_flow_px": float(limit),
                "copies": found,
                "separate captures": ok["separate captures"],
                "distinct photos": ok["distinct photos"],
                "precision": found / reported if reported else 1.0,
                "recall": found / total_copies if total_copies else 1.0,
            }
        )
    candidates = Counter(k for k, _s, _e in rows)
    return {
        "candidate_threshold": space.levels.near,
        "candidates_by_kind": {k: candidates.get(k, 0) for k in KINDS},
        "candidate_recall_of_copies": candidates["copies"] / total_copies if total_copies else 1.0,
        "seconds_per_pair": per_pair,
        "curve": curve,
    }


# --- copies first in search ---------------------------------------------------------------------------------


def search_quality(items: Sequence[Item], all_index: ImageIndex, all_ids: Sequence[int], seed: int) -> dict[str, Any]:
    """Each edited copy searched against the originals (copies first, verified); super-class precision@10."""
    originals = [it for it in items if it.edit is None]
    orig_index, orig_ids = open_cached(originals, seed, "originals")
    with orig_index:
        target_of = {it.capture: image_id for it, image_id in zip(originals, orig_ids, strict=True)}
        edits = [(n, it) for n, it in enumerate(items) if it.edit is not None]
        vectors = all_index.store.embeddings([all_ids[n] for n, _ in edits], all_index.vectors.meta.dim)
        started = time.perf_counter()
        correct: dict[str, list[bool]] = defaultdict(list)
        for (n, it), vector in zip(edits, vectors, strict=True):
            source = QueryImage(all_index.get(all_ids[n]).sha256, it.data)
            hits = orig_index.search_vector(vector, k=10, source=source)
            correct[it.edit or ""].append(bool(hits) and hits[0].image.id == target_of[it.capture])
        search_seconds = (time.perf_counter() - started) / max(1, len(edits))
    # Super-class precision among the ImageNet photos alone, as the model's own evaluation measures it (the
    # multiview photos belong to no super-class).
    photos = [it for it in originals if it.source == "imagenet"]
    photo_index, photo_ids = open_cached(photos, seed, "imagenet")
    with photo_index:
        group_of = {image_id: it.group for it, image_id in zip(photos, photo_ids, strict=True)}
        shares = []
        for it, image_id in zip(photos, photo_ids, strict=True):
            if it.group is None:
                continue
            _, hits = photo_index.search_by_ref(str(image_id), k=PRECISION_AT)
            shares.append(np.mean([group_of.get(h.image.id) == it.group for h in hits]))
    flat = [c for v in correct.values() for c in v]
    return {
        "queries": len(flat),
        "near_duplicate_recall1": float(np.mean(flat)),
        "misses": int(len(flat) - sum(flat)),
        "recall1_by_edit": {e: float(np.mean(v)) for e, v in sorted(correct.items())},
        "superclass_precision10": float(np.mean(shares)) if shares else None,
        "seconds_per_search": search_seconds,
    }


# --- output ---------------------------------------------------------------------------------------------------


def format_tables(result: dict[str, Any]) -> str:
    lines = [
        "| level | threshold | groups | pairs reported | copies | separate captures | distinct photos | "
        "pair precision | recall | same-object recall | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for q in result["levels"]:
        k = q["pairs_by_kind"]
        same = f"{q['same_object_recall']:.3f}" if q["same_object_recall"] is not None else "-"
        lines.append(
            f"| `{q['level']}` | {q['threshold']:.3f} | {q['groups']} | {q['reported_pairs']} | {k['copies']} | "
            f"{k['separate captures']} | {k['distinct photos']} | {q['pair_precision']:.4f} | "
            f"{q['recall']:.4f} ({q['recall_of']}) | {same} | {q['seconds']:.1f} |"
        )
    near = next((q for q in result["levels"] if q["level"] == "near"), None)
    if near:
        lines += ["", "| edit | recall at `near` |", "|---|---|"]
        lines += [f"| {e} | {r:.3f} |" for e, r in near["recall_by_edit"].items()]
    if "sweep" in result:
        sw = result["sweep"]
        lines += [
            "",
            f"candidates at {sw['candidate_threshold']}: {sw['candidates_by_kind']} "
            f"(candidate recall of copies {sw['candidate_recall_of_copies']:.4f}; "
            f"{1000 * sw['seconds_per_pair']:.1f} ms per pair verified)",
            "",
            "| max residual flow (px) | copies | separate captures | distinct photos | precision | recall |",
            "|---|---|---|---|---|---|",
        ]
        for c in sw["curve"]:
            lines.append(
                f"| {c['max_flow_px']:.2f} | {c['copies']} | {c['separate captures']} | {c['distinct photos']} | "
                f"{c['precision']:.4f} | {c['recall']:.4f} |"
            )
    if "search" in result:
        s = result["search"]
        lines += [
            "",
            "| queries | near-duplicate recall@1 | misses | super-class precision@10 | ms per search |",
            "|---|---|---|---|---|",
            f"| {s['queries']} | {s['near_duplicate_recall1']:.4f} | {s['misses']} | "
            f"{s['superclass_precision10']:.4f} | {1000 * s['seconds_per_search']:.1f} |",
        ]
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.duplicates_eval", description=__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=0, help="ImageNet photos to use (0 = all 1000; multiview: half)")
    p.add_argument("--seed", type=int, default=SEED, help="edit parameters (another seed: other copies)")
    p.add_argument("--levels", nargs="+", default=list(LEVELS), choices=LEVELS)
    p.add_argument("--sweep", action="store_true", help="also the residual flow of every candidate (calibration)")
    p.add_argument("--search", action="store_true", help="also copies first in search")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "duplicates-eval.json")
    args = p.parse_args(list(argv) if argv is not None else None)
    if not DEFAULT_PHOTOS.is_dir() or not MULTIVIEW.is_dir():
        raise SystemExit(f"needs the shared photos in {DEFAULT_PHOTOS} and {MULTIVIEW}")
    items = build_set(args.limit, args.seed)
    truth = true_pairs(items)
    print(
        f"{len(items)} images ({sum(i.edit is None for i in items)} originals), {len(truth[0])} copy pairs, "
        f"{os.cpu_count()} CPUs {platform.machine()} [{flags()}]",
        file=sys.stderr,
    )
    index, ids = open_cached(items, args.seed)
    result: dict[str, Any] = {
        "images": len(items),
        "originals": sum(i.edit is None for i in items),
        "copy_pairs": len(truth[0]),
        "same_pixel_pairs": len(truth[1]),
        "same_object_pairs": len(truth[2]),
        "seed": args.seed,
        "verification": verification.VERSION,
        "machine": {"cpus": os.cpu_count(), "flags": flags(), "load_avg": os.getloadavg()},
    }
    with index:
        if args.sweep:
            result["sweep"] = sweep(index, ids, items)
        result["levels"] = [level_quality(index, ids, items, level, truth) for level in args.levels]
        if args.search:
            result["search"] = search_quality(items, index, ids, args.seed)
    print(format_tables(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Near-duplicate thresholds, grouping and copies-first search, measured on edited real photos.

    python -m tests.benchmarks.duplicates_eval [--photos DIR] [--limit N] [--embeddings default mean ...]

Every photo of the folder (the shared ImageNet sample by default) gets two edited copies made here with
deterministic parameters (crop, recompress, resize, mirror, rotation, greyscale, overlay, brightness; each edit
on a quarter of the photos). Per embedding definition it reports:

- duplicate-pair precision and recall against the threshold, for the whole stored vector and for its
  feature (GeM) part alone: a pair is a true duplicate when both are the same photo (original or edit);
  every other pair of the set is a negative. From these it picks the levels (`exact`, `near`, `similar`);
- grouping on the stored set (originals and edits): single-link components against the guarded grouping the
  library uses, as pair precision/recall against the true groups and the number of groups mixing photos;
- copies first: each edited copy searched (not stored) against an index of the originals through
  `ImageIndex.search_vector`, the same code the API and the CLI use: near-duplicate recall@1; super-class
  precision@10 of the stored originals through `ImageIndex.search_by_ref`.

The indexes are kept in `bench-results/duplicates-eval/` (ingest is idempotent, so a rerun embeds nothing);
the curve is drawn to `docs/duplicates-pr.png` and the figures written to `bench-results/duplicates-eval.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from index.config import Settings
from index.duplicates import DuplicateSpace, find_pairs, group_pairs
from index.model.registry import DuplicateLevels
from index.pipeline import ImageSource
from index.service import ImageIndex
from tests.benchmarks.evaluate import (
    DEFAULT_PHOTOS,
    PRECISION_AT,
    REPO_ROOT,
    RESULTS_DIR,
    Photo,
    encode,
    generate_photos,
    load_photos,
)

EDITS = ("crop", "recompress", "resize", "mirror", "rotate", "greyscale", "overlay", "brightness")
EDITS_PER_PHOTO = 2
SEED = 20261126
CACHE_DIR = RESULTS_DIR / "duplicates-eval"
PLOT = REPO_ROOT / "docs" / "duplicates-pr.png"


@dataclass(frozen=True)
class Edited:
    original: int  # index into the photo list
    edit: str
    name: str
    data: bytes


def edit_photo(data: bytes, edit: str, rng: np.random.Generator) -> bytes:
    """One edited copy of `data`, the edit's parameters drawn from `rng`."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    w, h = img.size
    if edit == "crop":  # keep 70-90 % of each side, anywhere in the frame
        cw, ch = round(w * rng.uniform(0.7, 0.9)), round(h * rng.uniform(0.7, 0.9))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return encode(img.crop((left, top, left + cw, top + ch)), "JPEG", quality=90)
    if edit == "recompress":
        return encode(img, "JPEG", quality=int(rng.integers(10, 40)))
    if edit == "resize":  # down to 25-60 %, saved as JPEG
        scale = rng.uniform(0.25, 0.6)
        small = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
        return encode(small, "JPEG", quality=85)
    if edit == "mirror":
        return encode(ImageOps.mirror(img), "JPEG", quality=90)
    if edit == "rotate":  # 3-12 degrees either way, corners filled black
        angle = float(rng.uniform(3, 12) * rng.choice([-1, 1]))
        return encode(img.rotate(angle, Image.Resampling.BICUBIC), "JPEG", quality=90)
    if edit == "greyscale":
        return encode(img.convert("L"), "JPEG", quality=90)
    if edit == "overlay":  # a caption band with text and a logo-like box
        out = img.copy()
        draw = ImageDraw.Draw(out)
        band = round(h * rng.uniform(0.1, 0.18))
        top = 0 if rng.random() < 0.5 else h - band
        draw.rectangle((0, top, w, top + band), fill=(0, 0, 0))
        draw.text((8, top + band // 4), "SAMPLE COPYRIGHT 2026 " * 4, fill=(255, 255, 255))
        side = round(min(w, h) * 0.15)
        draw.rectangle((w - side - 8, 8, w - 8, 8 + side), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        return encode(out, "JPEG", quality=90)
    if edit == "brightness":
        out = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.6, 1.5)))
        out = ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.7, 1.3)))
        return encode(out, "JPEG", quality=90)
    raise ValueError(f"unknown edit {edit!r}")


def make_edits(photos: Sequence[Photo], per_photo: int = EDITS_PER_PHOTO, seed: int = SEED) -> list[Edited]:
    """`per_photo` edited copies of every photo, the edits taken in turn; the same seed gives the same bytes."""
    out = []
    for i, photo in enumerate(photos):
        for j in range(per_photo):
            edit = EDITS[(i * per_photo + j) % len(EDITS)]
            rng = np.random.default_rng([seed, i, j])
            stem = Path(photo.name).stem
            out.append(Edited(i, edit, f"{stem}__{edit}.jpg", edit_photo(photo.data, edit, rng)))
    return out


def open_cached(name: str, embedding: str, sources: Sequence[ImageSource]) -> tuple[ImageIndex, list[int]]:
    """An index in the cache directory holding `sources` (embedding only what is new); ids in source order."""
    # Named by the set's size, so a shorter run (--limit) never adds to the full run's index.
    folder = CACHE_DIR / f"{embedding}-{name}-{len(sources)}"
    settings = Settings(data_dir=folder, embedding=embedding, index_kind="flat")
    index = ImageIndex(settings)
    started = time.perf_counter()
    results = index.ingest(sources)
    added = sum(r.status == "added" for r in results)
    print(f"  {embedding}/{name}: {added} embedded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    failed = [r for r in results if r.id is None]
    if failed:
        raise SystemExit(f"{len(failed)} images were not ingested, e.g. {failed[0].name}: {failed[0].error}")
    return index, [int(r.id) for r in results if r.id is not None]


# --- pair precision and recall --------------------------------------------------------------------------

GRID = np.round(np.arange(0.40, 1.0001, 0.005), 3)


def pr_curve(part: NDArray[np.float32], labels: NDArray[np.int64]) -> dict[str, Any]:
    """Pair precision and recall at each threshold of GRID, over every unordered pair of the set."""
    sims = part @ part.T
    upper = np.triu_indices(len(part), k=1)
    s = sims[upper]
    same = labels[upper[0]] == labels[upper[1]]
    pos = np.sort(s[same])
    neg = np.sort(s[~same])
    tp = len(pos) - np.searchsorted(pos, GRID, side="left")
    fp = len(neg) - np.searchsorted(neg, GRID, side="left")
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return {
        "thresholds": GRID.tolist(),
        "precision": precision.tolist(),
        "recall": (tp / len(pos)).tolist(),
        "positives": len(pos),
        "negatives": len(neg),
    }


def lowest_threshold(curve: dict[str, Any], min_precision: float) -> float:
    """The lowest threshold from which precision stays at or above `min_precision` (highest recall)."""
    t, prec = np.array(curve["thresholds"]), np.array(curve["precision"])
    ok = prec >= min_precision
    # From the top down, the longest run of thresholds that all keep the precision.
    first_bad = np.flatnonzero(~ok)
    start = first_bad[-1] + 1 if len(first_bad) else 0
    return float(t[min(start, len(t) - 1)])


def at(curve: dict[str, Any], threshold: float) -> tuple[float, float]:
    n = int(np.argmin(np.abs(np.array(curve["thresholds"]) - threshold)))
    return float(curve["precision"][n]), float(curve["recall"][n])


def calibrate(
    vectors: NDArray[np.float32], labels: NDArray[np.int64], edits: Sequence[str | None], space: DuplicateSpace
) -> dict[str, Any]:
    """Curves for the whole vector and the features part, the levels, and the logits floor."""
    part = space.part(vectors)
    curves = {"features": pr_curve(part, labels)}
    if space.dims != space.dim:
        curves["whole"] = pr_curve(vectors, labels)
    feat = curves["features"]
    near = lowest_threshold(feat, 0.99)
    similar = lowest_threshold(feat, 0.90)
    # `exact`: no pair of different photos at all in the set (recall is what remains at precision 1).
    exact = max(near, lowest_threshold(feat, 1.0))
    originals = {int(lab): n for n, (lab, e) in enumerate(zip(labels, edits, strict=True)) if e is None}
    floor = 0.0
    if space.dims != space.dim:
        logits = vectors[:, space.dims :] / np.linalg.norm(vectors[:, space.dims :], axis=1, keepdims=True)
        sims = part @ part.T
        close = np.argwhere(np.triu(sims >= similar, k=1))
        lowest = float(np.min(np.einsum("ij,ij->i", logits[close[:, 0]], logits[close[:, 1]]))) if len(close) else 0
        floor = max(0.0, float(np.floor((lowest - 0.1) * 20) / 20))
        floor_seen = lowest
    levels = {"exact": exact, "near": near, "similar": similar}
    out: dict[str, Any] = {"levels": levels, "logits_floor": floor, "curves": curves}
    if space.dims != space.dim:
        out["lowest_logits_cosine_seen"] = floor_seen
    out["at_levels"] = {
        name: {kind: dict(zip(("precision", "recall"), at(c, t), strict=True)) for kind, c in curves.items()}
        for name, t in levels.items()
    }
    # Recall per edit at `near`: how many original-edit pairs reach it.
    out["near_recall_by_edit"] = {
        e: float(
            np.mean(
                [
                    part[n] @ part[originals[int(lab)]] >= near
                    for n, (lab, ed) in enumerate(zip(labels, edits, strict=True))
                    if ed == e
                ]
            )
        )
        for e in EDITS
    }
    # The whole vector at its own 0.99-precision threshold, for the comparison.
    if "whole" in curves:
        t_whole = lowest_threshold(curves["whole"], 0.99)
        out["whole_at_precision_0.99"] = {"threshold": t_whole, "recall": at(curves["whole"], t_whole)[1]}
    out["features_at_precision_0.99"] = {"threshold": near, "recall": at(feat, near)[1]}
    return out


# --- grouping -------------------------------------------------------------------------------------------


def grouping_quality(
    index: ImageIndex, ids: Sequence[int], labels: NDArray[np.int64], threshold: float, guarded: bool
) -> dict[str, Any]:
    """Groups from the library's candidate pairs, single-link or guarded, against the true groups."""
    label_of = {i: int(lab) for i, lab in zip(ids, labels, strict=True)}
    finder = index.duplicates
    started = time.perf_counter()
    pairs = find_pairs(index.vectors, finder.space, threshold)
    groups = group_pairs(pairs, index.vectors, finder.space, threshold, lambda xs: {x: x for x in xs}, guarded)
    seconds = time.perf_counter() - started
    predicted = {(min(a, b), max(a, b)) for _k, m in groups for a, _ in m for b, _ in m if a != b}
    truth: dict[int, list[int]] = {}
    for i, lab in label_of.items():
        truth.setdefault(lab, []).append(i)
    true_pairs = {(min(a, b), max(a, b)) for m in truth.values() for a in m for b in m if a != b}
    tp = len(predicted & true_pairs)
    mixed = sum(len({label_of[i] for i, _ in m}) > 1 for _k, m in groups)
    return {
        "grouping": "guarded" if guarded else "single-link",
        "groups": len(groups),
        "largest": max((len(m) for _k, m in groups), default=0),
        "groups_mixing_photos": mixed,
        "pair_precision": tp / len(predicted) if predicted else 1.0,
        "pair_recall": tp / len(true_pairs),
        "lowest_similarity_to_kept": min((s for _k, m in groups for _, s in m), default=1.0),
        "seconds": seconds,
        "candidate_pairs": len(pairs[0]),
    }


# --- copies first in search -----------------------------------------------------------------------------


def search_quality(
    index: ImageIndex,
    original_ids: Sequence[int],
    photos: Sequence[Photo],
    queries: NDArray[np.float32],
    targets: Sequence[int],
    edits: Sequence[str],
    copies_first: bool,
) -> dict[str, Any]:
    """Recall@1 of edited copies and super-class precision@10, through the service's own search."""
    space = index.searcher.duplicates
    index.searcher.duplicates = space if copies_first else None
    try:
        firsts = [hits[0].image.id if (hits := index.search_vector(q, k=10)) else -1 for q in queries]
        correct = np.array([f == original_ids[t] for f, t in zip(firsts, targets, strict=True)])
        group_of = {i: p.group for i, p in zip(original_ids, photos, strict=True)}
        shares = []
        for image_id, photo in zip(original_ids, photos, strict=True):
            if photo.group is None:
                continue
            _, hits = index.search_by_ref(str(image_id), k=PRECISION_AT)
            shares.append(np.mean([group_of.get(h.image.id) == photo.group for h in hits]))
    finally:
        index.searcher.duplicates = space
    return {
        "copies_first": copies_first,
        "near_duplicate_recall1": float(correct.mean()),
        "misses": int((~correct).sum()),
        "recall1_by_edit": {
            e: float(np.mean([c for c, ed in zip(correct, edits, strict=True) if ed == e])) for e in EDITS
        },
        "superclass_precision10": float(np.mean(shares)) if shares else None,
    }


# --- the run --------------------------------------------------------------------------------------------


def evaluate(photos: Sequence[Photo], edits: Sequence[Edited], embedding: str) -> dict[str, Any]:
    originals = [ImageSource(name=p.name, data=p.data) for p in photos]
    everything = originals + [ImageSource(name=e.name, data=e.data) for e in edits]
    labels = np.array(list(range(len(photos))) + [e.original for e in edits], np.int64)
    edit_names: list[str | None] = [None] * len(photos) + [e.edit for e in edits]
    all_index, all_ids = open_cached("all", embedding, everything)
    with all_index:
        space = all_index.duplicates.space
        vectors = all_index.store.embeddings(all_ids, all_index.vectors.meta.dim)
        result: dict[str, Any] = {
            "embedding": all_index.embedder.embedding.name,
            "dim": space.dim,
            "compared_dims": space.dims,
        }
        result["calibration"] = calibrate(vectors, labels, edit_names, space)
        near = result["calibration"]["levels"]["near"]
        # Group with the levels just measured, whatever the registry says today.
        measured = DuplicateLevels(
            **result["calibration"]["levels"], logits_floor=result["calibration"]["logits_floor"]
        )
        all_index.duplicates.space = dataclasses.replace(space, levels=measured)
        result["grouping"] = [grouping_quality(all_index, all_ids, labels, near, g) for g in (False, True)]
    orig_index, orig_ids = open_cached("originals", embedding, originals)
    with orig_index:
        orig_index.searcher.duplicates = dataclasses.replace(space, levels=measured)
        queries = vectors[len(photos) :]
        targets = [e.original for e in edits]
        names = [e.edit for e in edits]
        result["search"] = [
            search_quality(orig_index, orig_ids, photos, queries, targets, names, c) for c in (False, True)
        ]
    return result


def plot(results: Sequence[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        for kind, curve in r["calibration"]["curves"].items():
            whole = kind != "features" or r["compared_dims"] == r["dim"]
            label = f"{r['embedding']} ({'whole vector' if whole else 'features part'})"
            ax1.plot(curve["recall"], curve["precision"], label=label)
            if kind == "features":
                t = np.array(curve["thresholds"])
                ax2.plot(t, curve["precision"], label=f"{r['embedding']} precision")
                ax2.plot(t, curve["recall"], "--", label=f"{r['embedding']} recall")
                colour = ax2.get_lines()[-1].get_color()
                for level, value in r["calibration"]["levels"].items():
                    ax2.axvline(value, color=colour, lw=0.6, ls=":")
                    ax2.text(
                        value,
                        0.02 + 0.1 * len(ax1.get_lines()),
                        f"{level} {value:.3f}",
                        rotation=90,
                        fontsize=7,
                        va="bottom",
                        color=colour,
                    )
    # Both ends of the useful range: where precision starts to fall, recall is already above 0.9.
    ax1.set(
        xlabel="recall (duplicate pairs found)",
        ylabel="precision",
        title="Duplicate pairs",
        xlim=(0.9, 1.001),
        ylim=(0.8, 1.005),
    )
    ax2.set(xlabel="threshold (duplicate similarity)", title="Against the threshold", ylim=(0, 1.01), xlim=(0.4, 1))
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def format_tables(results: Sequence[dict[str, Any]]) -> str:
    lines = ["| embedding | part | level | threshold | pair precision | pair recall |", "|---|---|---|---|---|---|"]
    for r in results:
        cal = r["calibration"]
        for level, t in cal["levels"].items():
            for kind, pr in cal["at_levels"][level].items():
                name = f"`{r['embedding']}`"
                lines.append(f"| {name} | {kind} | `{level}` | {t:.3f} | {pr['precision']:.4f} | {pr['recall']:.4f} |")
    lines += ["", "| embedding | grouping | groups | mixing photos | largest | pair precision | pair recall | s |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in results:
        for g in r["grouping"]:
            lines.append(
                f"| `{r['embedding']}` | {g['grouping']} | {g['groups']} | {g['groups_mixing_photos']} | "
                f"{g['largest']} | {g['pair_precision']:.4f} | {g['pair_recall']:.4f} | {g['seconds']:.2f} |"
            )
    lines += ["", "| embedding | search | near-duplicate recall@1 | misses | super-class precision@10 |"]
    lines.append("|---|---|---|---|---|")
    for r in results:
        for q in r["search"]:
            lines.append(
                f"| `{r['embedding']}` | {'copies first' if q['copies_first'] else 'plain'} | "
                f"{q['near_duplicate_recall1']:.4f} | {q['misses']} | {q['superclass_precision10']:.4f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.duplicates_eval",
        description="Calibrate near-duplicate thresholds and measure grouping and copies-first search.",
    )
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of photos (default: the shared sample)")
    p.add_argument("--limit", type=int, default=0, help="use N photos spread over the classes (0 = all)")
    p.add_argument("--embeddings", nargs="+", default=["default", "mean"], help="embedding definitions")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "duplicates-eval.json")
    p.add_argument("--plot", type=Path, default=PLOT, help="precision/recall figure (PNG)")
    args = p.parse_args(argv)
    found = args.photos.is_dir()
    photos = load_photos(args.photos, args.limit) if found else generate_photos(args.limit or 250, SEED)
    edits = make_edits(photos)
    print(f"{len(photos)} photos, {len(edits)} edits, {os.cpu_count()} CPUs {platform.machine()}", file=sys.stderr)
    results = [evaluate(photos, edits, e) for e in args.embeddings]
    print(format_tables(results))
    for r in results:
        cal = r["calibration"]
        print(f"{r['embedding']}: levels {cal['levels']}, logits floor {cal['logits_floor']}", file=sys.stderr)
    plot(results, args.plot)
    report = {
        "photos": len(photos),
        "edits": len(edits),
        "edit_kinds": list(EDITS),
        "seed": SEED,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {args.out}, figure to {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Retrieval quality of the embedding definitions: classification, near-duplicates, semantic neighbours, speed.

    python -m tests.benchmarks.evaluate [--models efficientnet_lite0] [--embeddings mean gem ...] [--limit N]

Ingests a folder of labelled photos (`<wordnet id>_<name>.JPEG`, the shared ImageNet sample by default) into a
temporary index through `ImageIndex` and reports, per model and embedding definition:

- top-1: the stored top prediction against the class index (sorted wordnet ids);
- near-duplicate recall@1 and mAP: 300 queries made here from the photos by deterministic edits (crop, JPEG
  quality 15, mirror + small rotation, greyscale, 64 px downscale, brightness + occluding box), each of which
  should find its original;
- super-class precision@10: for each photo in a Restricted-ImageNet group, the share of its 10 nearest
  neighbours (itself excluded) from the same group;
- img/s: ingest throughput (decode + embed + store) and its ratio to the first definition of the same model.

Without the photo folder the evaluation runs on generated images (pattern families as groups, no classes).
`--explore` computes each image's pooled features once per view (plain, mirrored, other input scales) and
derives many candidate definitions from them without ingesting; `--preprocessing` compares the library's
decode path with timm's reference transform. Every mode prints a table and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from index.config import Settings
from index.model.embedder import Embedder
from index.model.imaging import decode_for_model
from index.model.registry import DEFAULT_EMBEDDING, EMBEDDINGS, Preprocessing
from index.pipeline import ImageSource
from index.service import ImageIndex

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PHOTOS = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-sample"
RESULTS_DIR = REPO_ROOT / "bench-results"
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})

# Restricted-ImageNet super-classes, inclusive class-index ranges.
SUPER_CLASSES: dict[str, tuple[int, int]] = {
    "dog": (151, 268),
    "cat": (281, 285),
    "frog": (30, 32),
    "turtle": (33, 37),
    "bird": (80, 100),
    "primate": (365, 382),
    "fish": (389, 397),
    "crab": (118, 121),
    "insect": (300, 319),
}
EDITS = ("crop", "jpeg15", "mirror_rotate", "greyscale", "downscale64", "brightness_box")
NEAR_DUPLICATE_QUERIES = 300
PRECISION_AT = 10
SEED = 20240905
GENERATED_FAMILIES = ("stripes", "rings", "checks", "blobs", "gradient")


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    class_index: int | None  # None for generated images
    group: str | None


@dataclass(frozen=True)
class Query:
    target: int  # index into the photo list
    edit: str
    data: bytes


@dataclass(frozen=True)
class Dataset:
    source: str
    photos: list[Photo]
    queries: list[Query]


# --- data -----------------------------------------------------------------------------------------------


def super_class(class_index: int) -> str | None:
    for name, (lo, hi) in SUPER_CLASSES.items():
        if lo <= class_index <= hi:
            return name
    return None


def load_photos(folder: Path, limit: int) -> list[Photo]:
    """Labelled photos from `folder`; the class index is the rank of the wordnet id among all ids there."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    wnids = sorted({p.name.split("_", 1)[0] for p in files})
    index_of = {w: i for i, w in enumerate(wnids)} if len(wnids) == 1000 else {}
    if limit:
        # An even spread over the classes, so a short run still sees every super-class.
        files = [files[i] for i in np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int)]
    photos = []
    for p in files:
        cls = index_of.get(p.name.split("_", 1)[0])
        photos.append(Photo(p.name, p.read_bytes(), cls, super_class(cls) if cls is not None else None))
    return photos


def generate_photos(count: int, seed: int) -> list[Photo]:
    """Synthetic photos in pattern families (the families serve as groups); used when no photo folder exists."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    photos = []
    for i in range(count):
        family = GENERATED_FAMILIES[i % len(GENERATED_FAMILIES)]
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        freq, angle = rng.uniform(0.03, 0.2), rng.uniform(0, math.pi)
        u = xx * math.cos(angle) + yy * math.sin(angle)
        if family == "stripes":
            t = (np.sin(u * freq) > 0).astype(np.float32)
        elif family == "rings":
            cx, cy = rng.uniform(0, 320), rng.uniform(0, 240)
            t = (np.sin(np.hypot(xx - cx, yy - cy) * freq) > 0).astype(np.float32)
        elif family == "checks":
            v = -xx * math.sin(angle) + yy * math.cos(angle)
            t = ((np.floor(u * freq / 2) + np.floor(v * freq / 2)) % 2).astype(np.float32)
        elif family == "blobs":
            t = np.zeros_like(xx)
            for _ in range(int(rng.integers(3, 9))):
                cx, cy, r = rng.uniform(0, 320), rng.uniform(0, 240), rng.uniform(15, 60)
                t = np.maximum(t, (np.hypot(xx - cx, yy - cy) < r).astype(np.float32))
        else:
            t = (u - u.min()) / (u.max() - u.min())
        pixels = c1 * (1 - t[..., None]) + c2 * t[..., None] + rng.normal(0, 6, (240, 320, 3))
        buf = io.BytesIO()
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        photos.append(Photo(f"generated_{family}_{i:04d}.jpg", buf.getvalue(), None, family))
    return photos


def encode(img: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    """`img` as the bytes of a `fmt` file."""
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def edit_photo(data: bytes, edit: str, rng: np.random.Generator) -> bytes:
    """One near-duplicate of `data`: the edit with parameters drawn from `rng`."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    w, h = img.size
    if edit == "crop":
        keep = rng.uniform(0.6, 0.85)
        cw, ch = round(w * keep), round(h * keep)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return encode(img.crop((left, top, left + cw, top + ch)))
    if edit == "jpeg15":
        return encode(img, "JPEG", quality=15)
    if edit == "mirror_rotate":
        angle = float(rng.uniform(3, 10) * rng.choice([-1, 1]))
        return encode(ImageOps.mirror(img).rotate(angle, Image.Resampling.BICUBIC))
    if edit == "greyscale":
        return encode(img.convert("L"))
    if edit == "downscale64":
        scale = 64 / min(w, h)
        return encode(img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS))
    if edit == "brightness_box":
        out = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.6, 1.4)))
        bw, bh = round(w * rng.uniform(0.2, 0.35)), round(h * rng.uniform(0.2, 0.35))
        left, top = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        ImageDraw.Draw(out).rectangle((left, top, left + bw, top + bh), fill=colour)
        return encode(out)
    raise ValueError(f"unknown edit {edit!r}")


def make_queries(photos: Sequence[Photo], count: int, seed: int) -> list[Query]:
    """`count` edited copies of distinct photos, the edits taken in turn; the same seed gives the same bytes."""
    rng = np.random.default_rng(seed)
    targets = rng.choice(len(photos), size=min(count, len(photos)), replace=False)
    queries = []
    for i, target in enumerate(targets):
        edit = EDITS[i % len(EDITS)]
        edit_rng = np.random.default_rng([seed, int(target), i])
        queries.append(Query(int(target), edit, edit_photo(photos[target].data, edit, edit_rng)))
    return queries


def build_dataset(folder: Path, limit: int) -> Dataset:
    if folder.is_dir():
        photos, source = load_photos(folder, limit), str(folder)
    else:
        photos, source = generate_photos(limit or 250, SEED), "generated"
    return Dataset(source, photos, make_queries(photos, NEAR_DUPLICATE_QUERIES, SEED))


# --- metrics --------------------------------------------------------------------------------------------


def near_duplicate_scores(
    db: NDArray[np.float32], queries: NDArray[np.float32], targets: Sequence[int]
) -> tuple[float, float, NDArray[np.float64]]:
    """(recall@1, mAP, reciprocal ranks): one relevant item per query, so AP is 1 / its rank."""
    sims = queries @ db.T
    own = sims[np.arange(len(targets)), np.asarray(targets)]
    ranks = 1 + (sims > own[:, None]).sum(axis=1)
    rr = 1.0 / ranks
    return float((ranks == 1).mean()), float(rr.mean()), rr


def group_precision(db: NDArray[np.float32], groups: Sequence[str | None], k: int = PRECISION_AT) -> float | None:
    """Mean share of same-group photos among the k nearest neighbours of each grouped photo (itself left out)."""
    members = [i for i, g in enumerate(groups) if g is not None]
    if not members:
        return None
    sims = db[members] @ db.T
    sims[np.arange(len(members)), members] = -np.inf
    k = min(k, len(db) - 1)
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    group_arr = np.array([g or "" for g in groups])
    hits = group_arr[nearest] == group_arr[members][:, None]
    return float(hits.mean())


def top1_accuracy(predicted: Sequence[int], photos: Sequence[Photo]) -> float | None:
    pairs = [(p, ph.class_index) for p, ph in zip(predicted, photos, strict=True) if ph.class_index is not None]
    if not pairs:
        return None
    return float(np.mean([p == c for p, c in pairs]))


def per_edit_recall(rr: NDArray[np.float64], queries: Sequence[Query]) -> dict[str, float]:
    return {e: float(np.mean([r == 1.0 for r, q in zip(rr, queries, strict=True) if q.edit == e])) for e in EDITS}


# --- the library evaluation -----------------------------------------------------------------------------


def evaluate_definition(data: Dataset, model: str, embedding: str, workdir: Path, **overrides: Any) -> dict[str, Any]:
    """Ingest the photos into a fresh index with one model and embedding definition and measure it
    (`overrides`: other settings, such as the inference engine and precision)."""
    settings = Settings(data_dir=workdir, model=model, embedding=embedding, index_kind="flat", **overrides)
    with ImageIndex(settings) as index:
        embedder = index.embedder.load()  # weights loading is not throughput
        # Nor is oneDNN building kernels for each new batch shape on first use.
        size = embedder.preprocessing.input_size
        for batch in {settings.batch_size, len(data.photos) % settings.batch_size} - {0}:
            embedder.forward(np.zeros((batch, size, size, 3), np.uint8))
        started = time.perf_counter()
        results = index.ingest([ImageSource(name=p.name, data=p.data) for p in data.photos])
        seconds = time.perf_counter() - started
        failed = [r for r in results if r.id is None]
        if failed:
            raise SystemExit(f"{model}:{embedding}: {len(failed)} photos were not ingested, e.g. {failed[0].error}")
        ids = [r.id for r in results if r.id is not None]
        dim = index.vectors.meta.dim
        db = index.store.embeddings(ids, dim)
        embedded = index.embed([ImageSource(name=f"query{i}", data=q.data) for i, q in enumerate(data.queries)])
        query_vectors = np.stack([vector for _sha, vector, _preds in embedded])
        targets = [q.target for q in data.queries]
        recall1, mean_ap, rr = near_duplicate_scores(db, query_vectors, targets)
        # Cross-check the exact ranking against what the service's own search returns.
        served = sum(
            1
            for vector, target in zip(query_vectors, targets, strict=True)
            if (hits := index.search_vector(vector, k=1)) and hits[0].image.id == ids[target]
        )
        top1 = [r.predictions[0].class_index if r.predictions else -1 for r in results]
        return {
            "model": model,
            "embedding": index.embedder.embedding.name,
            "version": index.embedder.version,
            "dim": dim,
            "precision": str(index.embedder.dtype).removeprefix("torch."),
            "top1": top1_accuracy(top1, data.photos),
            "near_duplicate_recall1": recall1,
            "near_duplicate_recall1_search": served / len(targets),
            "near_duplicate_map": mean_ap,
            "near_duplicate_recall1_by_edit": per_edit_recall(rr, data.queries),
            "superclass_precision10": group_precision(db, [p.group for p in data.photos]),
            "ingest_seconds": seconds,
            "images_per_second": len(data.photos) / seconds,
        }


def run_library(data: Dataset, models: Sequence[str], embeddings: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        for embedding in embeddings:
            with tempfile.TemporaryDirectory(prefix="imgsim-eval-") as tmp:
                row = evaluate_definition(data, model, embedding, Path(tmp))
            rows.append(row)
            print(f"  {row['version']}: {row['images_per_second']:.1f} img/s", file=sys.stderr, flush=True)
    for model in models:
        same = [r for r in rows if r["model"] == model]
        for r in same:
            r["speed_vs_first"] = r["images_per_second"] / same[0]["images_per_second"]
    return rows


# --- exploration: many definitions from one pass per view -----------------------------------------------


@dataclass(frozen=True)
class View:
    name: str
    flip: bool = False
    scale: float = 1.0


@dataclass
class Pooled:
    """Per-image pooled outputs of one view."""

    features: dict[str, NDArray[np.float32]]  # "mean", "gem2", "gem3", ...
    logits: NDArray[np.float32]
    seconds: float


GEM_POWERS = (2.0, 3.0, 4.0, 6.0)


def pool_view(embedder: Embedder, photos: Sequence[bytes], view: View, batch_size: int = 32) -> Pooled:
    """Decode with the library, run the network once per image, keep every pooling of the feature map."""
    import torch

    model: Any = embedder.load().engine.model  # type: ignore[attr-defined]  # the torch engine's network
    assert model is not None
    base = embedder.preprocessing
    size = round(base.input_size * view.scale)
    pre = dataclasses.replace(base, input_size=size)
    mean = torch.tensor(base.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(base.std).view(1, 3, 1, 1) * 255.0
    crops = np.stack([decode_for_model(d, pre, 10**9).crop for d in photos])
    feats: dict[str, list[NDArray[np.float32]]] = {"mean": [], **{f"gem{p:g}": [] for p in GEM_POWERS}}
    logits: list[NDArray[np.float32]] = []
    seconds = 0.0
    dtype = embedder.dtype
    with torch.inference_mode():
        # Untimed batches first: oneDNN builds its kernels for each new input shape on first use.
        for batch in {min(batch_size, len(crops)), len(crops) % batch_size} - {0}:
            warm = torch.zeros(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                model.forward_features(warm)
        for start in range(0, len(crops), batch_size):
            started = time.perf_counter()
            x = torch.as_tensor(crops[start : start + batch_size]).permute(0, 3, 1, 2).float().sub_(mean).div_(std)
            if view.flip:
                x = x.flip(3)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                fmap = model.forward_features(x).float()
            pooled = fmap.mean(dim=(2, 3))
            logits.append(model.classifier(pooled).numpy())
            seconds += time.perf_counter() - started
            feats["mean"].append(pooled.numpy())
            for p in GEM_POWERS:
                feats[f"gem{p:g}"].append(fmap.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p).numpy())
    return Pooled({k: np.concatenate(v) for k, v in feats.items()}, np.concatenate(logits), seconds)


def _unit(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


def _softmax(x: NDArray[np.float32], temperature: float = 1.0) -> NDArray[np.float32]:
    z = x / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Candidate:
    """A candidate definition: a feature pooling, an optional head term and its weight, and the views."""

    feature: str | None  # "mean", "gem3", ... or None for head only
    head: str | None = None  # "logits", "probs" or "probsT<t>" (softmax at temperature t)
    weight: float = 1.0
    views: tuple[str, ...] = ("plain",)

    @property
    def name(self) -> str:
        parts = []
        if self.feature:
            parts.append(self.feature)
        if self.head:
            parts.append(f"{self.weight:g}*{self.head}" if self.feature else self.head)
        suffix = "" if self.views == ("plain",) else f" [{'+'.join(self.views)}]"
        return "+".join(parts) + suffix


def _head(logits: NDArray[np.float32], head: str) -> NDArray[np.float32]:
    if head == "logits":
        return logits
    if head == "probs":
        return _softmax(logits)
    if head.startswith("probsT"):
        return _softmax(logits, float(head.removeprefix("probsT")))
    raise ValueError(head)


def candidate_vectors(c: Candidate, pooled: dict[str, Pooled]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(vectors, logits averaged over the views) for one candidate."""
    logits = np.mean([pooled[v].logits for v in c.views], axis=0).astype(np.float32)
    parts = []
    if c.feature:
        parts.append(_unit(np.mean([_unit(pooled[v].features[c.feature]) for v in c.views], axis=0)))
    if c.head:
        parts.append(_unit(_head(logits, c.head)) * (c.weight if c.feature else 1.0))
    return _unit(np.concatenate(parts, axis=1)), logits


def default_candidates(view_names: Sequence[str]) -> list[Candidate]:
    out = [Candidate("mean")]
    out += [Candidate(f"gem{p:g}") for p in GEM_POWERS]
    out += [Candidate(None, h) for h in ("logits", "probs", "probsT2", "probsT4")]
    for feature in ("mean", "gem2", "gem3", "gem4"):
        out += [Candidate(feature, "logits", w) for w in (0.5, 0.7, 1.0, 1.3, 1.6, 2.0)]
    for feature in ("mean", "gem3"):
        out += [Candidate(feature, h, w) for h in ("probsT2", "probsT4") for w in (0.5, 1.0, 1.5)]
    extra = [v for v in view_names if v != "plain"]
    for v in extra:
        for c in (
            Candidate("mean"),
            Candidate("gem3"),
            Candidate("gem3", "logits", 1.0),
            Candidate("mean", "logits", 1.0),
        ):
            out.append(dataclasses.replace(c, views=("plain", v)))
    return out


def run_exploration(data: Dataset, models: Sequence[str], extra_views: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    originals = [p.data for p in data.photos]
    query_bytes = [q.data for q in data.queries]
    targets = [q.target for q in data.queries]
    groups = [p.group for p in data.photos]
    for model in models:
        with tempfile.TemporaryDirectory(prefix="imgsim-eval-") as tmp:
            embedder = Embedder(Settings(data_dir=Path(tmp), model=model, engine="torch"))
            embedder.load()
            views = [View("plain")]
            if extra_views:
                views += [View("flip", flip=True), View("s0.8", scale=0.8), View("s1.25", scale=1.25)]
            db: dict[str, Pooled] = {}
            qs: dict[str, Pooled] = {}
            for view in views:
                db[view.name] = pool_view(embedder, originals, view)
                qs[view.name] = pool_view(embedder, query_bytes, view)
                rate = len(originals) / db[view.name].seconds
                print(f"  {model} view {view.name}: {rate:.1f} img/s forward", file=sys.stderr, flush=True)
            dtype = str(embedder.dtype).removeprefix("torch.")
        plain_rate = len(originals) / db["plain"].seconds
        for c in default_candidates([v.name for v in views]):
            db_vectors, logits = candidate_vectors(c, db)
            q_vectors, _ = candidate_vectors(c, qs)
            recall1, mean_ap, rr = near_duplicate_scores(db_vectors, q_vectors, targets)
            seconds = sum(db[v].seconds for v in c.views)
            rows.append(
                {
                    "model": model,
                    "embedding": c.name,
                    "dim": int(db_vectors.shape[1]),
                    "precision": dtype,
                    "top1": top1_accuracy([int(i) for i in logits.argmax(axis=1)], data.photos),
                    "near_duplicate_recall1": recall1,
                    "near_duplicate_map": mean_ap,
                    "near_duplicate_recall1_by_edit": per_edit_recall(rr, data.queries),
                    "superclass_precision10": group_precision(db_vectors, groups),
                    "images_per_second": len(originals) / seconds,
                    "forward_seconds": seconds,
                    "plain_images_per_second": plain_rate,
                }
            )
    first = rows[0]["images_per_second"] if rows else 1.0
    for r in rows:
        r["speed_vs_first"] = r["images_per_second"] / first
    return rows


# --- preprocessing fidelity -----------------------------------------------------------------------------


def run_preprocessing_check(data: Dataset, model: str) -> dict[str, Any]:
    """Top-1 of the library's decode path against timm's reference eval transform, same network and dtype."""
    import timm
    import torch
    from timm.data import create_transform, resolve_data_config

    with tempfile.TemporaryDirectory(prefix="imgsim-eval-") as tmp:
        embedder = Embedder(Settings(data_dir=Path(tmp), model=model, engine="torch")).load()
    net: Any = embedder.engine.model  # type: ignore[attr-defined]
    assert net is not None
    transform = create_transform(**resolve_data_config({}, model=net))
    pre: Preprocessing = embedder.preprocessing
    library, reference = [], []
    timings = {"library": 0.0, "reference": 0.0}
    with torch.inference_mode():
        for start in range(0, len(data.photos), 32):
            chunk = data.photos[start : start + 32]
            t0 = time.perf_counter()
            crops = np.stack([decode_for_model(p.data, pre, 10**9).crop for p in chunk])
            t1 = time.perf_counter()
            ref = torch.stack([transform(Image.open(io.BytesIO(p.data)).convert("RGB")) for p in chunk])
            t2 = time.perf_counter()
            timings["library"] += t1 - t0
            timings["reference"] += t2 - t1
            library += [p[0].class_index for p in embedder.forward(crops).predictions]
            with torch.autocast("cpu", dtype=embedder.dtype, enabled=embedder.dtype != torch.float32):
                fmap = net.forward_features(ref.contiguous(memory_format=torch.channels_last)).float()
            reference += net.classifier(fmap.mean(dim=(2, 3))).argmax(dim=1).tolist()
    agreement = float(np.mean([a == b for a, b in zip(library, reference, strict=True)]))
    return {
        "model": model,
        "timm": timm.__version__,
        "precision": str(embedder.dtype).removeprefix("torch."),
        "library_top1": top1_accuracy(library, data.photos),
        "reference_top1": top1_accuracy(reference, data.photos),
        "agreement": agreement,
        "library_decode_images_per_second": len(data.photos) / timings["library"],
        "reference_decode_images_per_second": len(data.photos) / timings["reference"],
    }


# --- output ---------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ["model", "embedding", "dim", "top-1", "dup R@1", "dup mAP", "super P@10", "img/s", "speed"]
    lines = [header]
    for r in rows:
        lines.append(
            [
                r["model"],
                r["embedding"],
                str(r["dim"]),
                _fmt(r["top1"]),
                _fmt(r["near_duplicate_recall1"]),
                _fmt(r["near_duplicate_map"]),
                _fmt(r["superclass_precision10"]),
                _fmt(r["images_per_second"], 1),
                f"{r['speed_vs_first']:.2f}x",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append(
            "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.evaluate",
        description="Measure retrieval quality and speed of embedding definitions on labelled photos.",
        epilog="example: python -m tests.benchmarks.evaluate --embeddings mean default --limit 200",
    )
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of <wnid>_<name>.JPEG photos")
    p.add_argument("--models", nargs="+", default=["efficientnet_lite0"], help="registry model names")
    p.add_argument(
        "--embeddings",
        nargs="+",
        default=None,
        help=f"embedding definitions, 'default' included (default: all of {', '.join(EMBEDDINGS)})",
    )
    p.add_argument("--limit", type=int, default=0, help="use N photos spread over the classes (0 = all)")
    p.add_argument("--out", type=Path, default=None, help="JSON results file (default: bench-results/...)")
    p.add_argument("--explore", action="store_true", help="derive many candidate definitions without ingesting")
    p.add_argument("--views", action="store_true", help="with --explore: also mirrored and rescaled inputs")
    p.add_argument("--preprocessing", action="store_true", help="compare the decode path with timm's transform")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = build_dataset(args.photos, args.limit)
    print(
        f"{len(data.photos)} photos from {data.source}, {len(data.queries)} near-duplicate queries, "
        f"{os.cpu_count()} CPUs",
        file=sys.stderr,
    )
    report: dict[str, Any] = {
        "dataset": data.source,
        "photos": len(data.photos),
        "near_duplicate_queries": len(data.queries),
        "edits": list(EDITS),
        "seed": SEED,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "default_embedding": DEFAULT_EMBEDDING,
    }
    run: Callable[[], None]
    if args.preprocessing:
        mode = "preprocessing"

        def run() -> None:
            result = run_preprocessing_check(data, args.models[0])
            report["preprocessing"] = result
            for key, value in result.items():
                print(f"{key:36} {value:.3f}" if isinstance(value, float) else f"{key:36} {value}")

    elif args.explore:
        mode = "explore"

        def run() -> None:
            rows = run_exploration(data, args.models, args.views)
            report["results"] = rows
            print(format_table(rows))

    else:
        mode = "evaluate"

        def run() -> None:
            rows = run_library(data, args.models, args.embeddings or list(EMBEDDINGS))
            report["results"] = rows
            print(format_table(rows))

    run()
    out = args.out or RESULTS_DIR / ("evaluate.json" if mode == "evaluate" else f"evaluate-{mode}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

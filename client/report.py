"""What a ranking run produces, the same in local and remote mode, and how it is printed."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field

from index.model.registry import Prediction

# Predictions below this probability are noise to a reader: never printed.
MIN_PRINTED_SCORE = 0.01
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Control characters (C0, DEL, C1) and bidirectional overrides: in a file name they could move the
# terminal's cursor, recolour or rewrite what is shown, or reorder it.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def csv_text(value: str) -> str:
    """A text cell a spreadsheet shows as text: one starting like a formula gets a leading `'`."""
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def terminal_text(value: str) -> str:
    """A name as it may be printed to a terminal: control characters shown as escapes (`\\x1b`), not sent."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), value)


@dataclass(frozen=True)
class RankedImage:
    """One row of the printed ranking."""

    file: str
    score: float
    predictions: list[Prediction]
    path: str = ""


@dataclass(frozen=True)
class RankReport:
    reference: str
    metric: str
    rows: list[RankedImage]
    added: int
    existing: int
    skipped: list[tuple[str, str]]  # (file, why)
    seconds: float
    reference_predictions: list[Prediction] = field(default_factory=list)
    reference_path: str = ""
    restored: int = 0  # images that were in the trash, taken out of it by this run


def shown_predictions(preds: list[Prediction], count: int = 2) -> str:
    """The best `count` predictions of at least 1 %, as 'label 37%; label 12%'."""
    kept = [p for p in preds if p.score >= MIN_PRINTED_SCORE][:count]
    return "; ".join(f"{p.label.split(',')[0]} {p.score:.0%}" for p in kept)


def format_table(report: RankReport) -> str:
    """The ranking as an aligned text table."""
    score_name = "distance" if report.metric == "euclidean" else "similarity"
    header = ("rank", "file", score_name, "top predictions")
    rows = [
        (
            str(n),
            terminal_text(r.file),
            f"{r.score:.4f}",
            shown_predictions(r.predictions),
        )
        for n, r in enumerate(report.rows, start=1)
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    head = f"Reference: {terminal_text(report.reference)}   metric: {report.metric}"
    if report.reference_predictions:
        head += f"   predicted: {shown_predictions(report.reference_predictions, 3)}"
    lines = [head]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
    return "\n".join(lines)


def _predictions_json(preds: list[Prediction]) -> list[dict[str, object]]:
    return [
        {"label": p.label, "class_index": p.class_index, "score": round(p.score, 6)}
        for p in preds
        if p.score >= MIN_PRINTED_SCORE
    ]


def rank_json(report: RankReport) -> str:
    """The ranking as one JSON object."""
    return json.dumps(
        {
            "reference": report.reference,
            "reference_path": report.reference_path,
            "reference_predictions": _predictions_json(report.reference_predictions),
            "metric": report.metric,
            "results": [
                {
                    "rank": n,
                    "file": r.file,
                    "path": r.path,
                    "score": round(r.score, 6),
                    "predictions": _predictions_json(r.predictions),
                }
                for n, r in enumerate(report.rows, start=1)
            ],
        },
        indent=2,
    )


def rank_csv(report: RankReport) -> str:
    """The ranking as CSV: one row per image, the reference's name and the metric on every row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "file", "path", report.metric, "predictions", "reference"])
    for n, r in enumerate(report.rows, start=1):
        texts = [csv_text(t) for t in (r.file, r.path, shown_predictions(r.predictions, 5), report.reference)]
        writer.writerow([n, *texts[:2], f"{r.score:.6f}", *texts[2:]])
    return out.getvalue()


@dataclass(frozen=True)
class FileCopy:
    """One file of a duplicate group."""

    id: int  # the stored image it is (byte copies share one)
    filename: str
    path: str
    similarity: float  # to the kept file
    kept: bool
    sha256: str = ""  # of the bytes ingested from `path`
    size: int = 0  # bytes
    evidence: str = ""  # what the pixels say about it and the kept file (`Evidence.kind`), "" when not checked


@dataclass(frozen=True)
class FileGroup:
    keep: int
    files: list[FileCopy]  # the kept file first
    copies: bool = True  # every file is a proven copy of the kept one (levels exact and near)
    reason: str = ""  # why the files are a group, in words


@dataclass(frozen=True)
class DuplicatesHeader:
    """What was asked for: a level (None for a threshold of one's own), the threshold, and what it means."""

    level: str | None
    threshold: float
    meaning: str


def duplicates_json(header: DuplicatesHeader, groups: list[FileGroup]) -> str:
    """`{"level", "meaning", "threshold", "groups": [{"keep", "copies", "reason", "images": [{"id", "filename",
    "path", "similarity", "evidence"}]}]}`."""
    return json.dumps(
        {
            "level": header.level,
            "meaning": header.meaning,
            "threshold": header.threshold,
            "groups": [
                {
                    "keep": g.keep,
                    "copies": g.copies,
                    "reason": g.reason,
                    "images": [
                        {
                            "id": f.id,
                            "filename": f.filename,
                            "path": f.path,
                            "similarity": round(f.similarity, 6),
                            "evidence": f.evidence or None,
                        }
                        for f in g.files
                    ],
                }
                for g in groups
            ],
        },
        indent=2,
    )


def duplicates_csv(groups: list[FileGroup]) -> str:
    """One row per file: its group (1 = largest), whether it is the one kept, and its similarity to it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["group", "keep", "id", "filename", "path", "similarity", "evidence"])
    for n, g in enumerate(groups, start=1):
        for f in g.files:
            row = [n, int(f.kept), f.id, csv_text(f.filename), csv_text(f.path), f"{f.similarity:.6f}", f.evidence]
            writer.writerow(row)
    return out.getvalue()


def format_duplicates(header: DuplicatesHeader, groups: list[FileGroup]) -> str:
    """The groups as text: the file to keep first, then its copies with their similarity."""
    kind = "groups of copies" if header.level in ("exact", "near") else "groups of similar photos"
    asked = f"level {header.level}" if header.level else f"similarity >= {header.threshold:.3f}"
    lines = [f"{len(groups)} {kind} ({asked}: {header.meaning})"]
    for n, g in enumerate(groups, start=1):
        lines.append(
            f"\ngroup {n}: {len(g.files)} files; {g.reason}" if g.reason else f"\ngroup {n}: {len(g.files)} files"
        )
        paths = [terminal_text(f.path) for f in g.files]
        width = max(len(p) for p in paths)
        for f, path in zip(g.files, paths, strict=True):
            lines.append(f"  {'keep' if f.kept else '    '}  {path.ljust(width)}  {f.similarity:.4f}")
    return "\n".join(lines)

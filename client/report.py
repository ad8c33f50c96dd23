"""What a ranking run produces, the same in local and remote mode, and how it is printed."""

from __future__ import annotations

from dataclasses import dataclass

from index.registry import Prediction


@dataclass(frozen=True)
class RankedImage:
    """One row of the printed ranking."""

    file: str
    score: float
    predictions: list[Prediction]


@dataclass(frozen=True)
class RankReport:
    reference: str
    metric: str
    rows: list[RankedImage]
    added: int
    existing: int
    skipped: list[tuple[str, str]]  # (file, why)
    seconds: float


def format_table(report: RankReport) -> str:
    """The ranking as an aligned text table."""
    score_name = "distance" if report.metric == "euclidean" else "similarity"
    header = ("rank", "file", score_name, "top predictions")
    rows = [
        (
            str(n),
            r.file,
            f"{r.score:.4f}",
            "; ".join(f"{p.label.split(',')[0]} {p.score:.0%}" for p in r.predictions[:2]),
        )
        for n, r in enumerate(report.rows, start=1)
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = [f"Reference: {report.reference}   metric: {report.metric}"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
    return "\n".join(lines)

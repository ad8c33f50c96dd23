"""Self-contained HTML reports: every thumbnail inline (base64 JPEG), no file or network needed to open them."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from client.report import DuplicatesHeader, FileGroup, RankReport
from index.errors import ImgsimError
from index.storage.thumbnails import make_thumbnail

THUMB = 192

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
.row { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 200px; border: 2px solid #ddd; border-radius: 6px; padding: 4px; background: #fafafa; }
figure.keep { border-color: #2a7; background: #effaf3; }
figure img { display: block; max-width: 192px; max-height: 192px; margin: auto; }
figcaption { font-size: 12px; word-break: break-all; margin-top: 4px; }
.badge { display: inline-block; background: #2a7; color: #fff; border-radius: 3px; padding: 0 4px; font-size: 11px; }
.muted { color: #777; }
"""


def thumbnail_uri(path: Path) -> str | None:
    """A `data:` URI of a small JPEG of the image at `path`, or None when it cannot be read."""
    try:
        data = make_thumbnail(path.read_bytes(), THUMB)
    except (OSError, ImgsimError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _figure(path: Path, lines: Sequence[str], css: str = "", badge: str = "") -> str:
    uri = thumbnail_uri(path)
    img = f'<img src="{uri}" alt="{html.escape(path.name)}">' if uri else '<p class="muted">(unreadable)</p>'
    caption = "<br>".join(html.escape(line) for line in lines)
    mark = f'<span class="badge">{html.escape(badge)}</span> ' if badge else ""
    return f'<figure class="{css}">{img}<figcaption>{mark}{caption}</figcaption></figure>'


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def duplicates_html(groups: Sequence[FileGroup], header: DuplicatesHeader) -> str:
    """Every group's thumbnails side by side, the kept image first and marked."""
    asked = f"level {header.level}" if header.level else f"similarity &ge; {header.threshold:.3f}"
    parts = [f'<p class="muted">{len(groups)} groups at {asked}: {html.escape(header.meaning)}</p>']
    for n, group in enumerate(groups, start=1):
        figures = [
            _figure(
                Path(f.path),
                [f.path, f"similarity {f.similarity:.4f}"],
                "keep" if f.kept else "",
                "keep" if f.kept else "",
            )
            for f in group.files
        ]
        what = "copies" if group.copies else "similar photos"
        title = f"<h2>Group {n}: {len(group.files)} {what}</h2>"
        reason = f'<p class="muted">{html.escape(group.reason)}</p>' if group.reason else ""
        parts.append(f'{title}{reason}<div class="row">{"".join(figures)}</div>')
    return _page("Near-duplicates", "\n".join(parts))


def contact_sheet_html(report: RankReport) -> str:
    """The reference and its ranked images: thumbnails, scores and predictions."""
    score_name = "distance" if report.metric == "euclidean" else "similarity"
    ref_preds = [f"{p.label.split(',')[0]} {p.score:.0%}" for p in report.reference_predictions if p.score >= 0.01]
    body = [
        '<div class="row">',
        _figure(Path(report.reference_path or report.reference), [report.reference, *ref_preds], "keep", "reference"),
        '</div><h2>Ranked</h2><div class="row">',
    ]
    for n, row in enumerate(report.rows, start=1):
        preds = [f"{p.label.split(',')[0]} {p.score:.0%}" for p in row.predictions if p.score >= 0.01][:3]
        lines = [f"{n}. {row.file}", f"{score_name} {row.score:.4f}", *preds]
        body.append(_figure(Path(row.path or row.file), lines))
    body.append("</div>")
    return _page(f"Similar to {report.reference} ({report.metric})", "\n".join(body))

"""Local mode: the CLI runs the library in-process against a data directory."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from client.report import RankedImage, RankReport
from index.config import Settings
from index.errors import InvalidArgument
from index.ingest import list_image_files
from index.pipeline import ImageSource, resolved_paths
from index.search import resolve_label
from index.service import ImageIndex

PROGRESS_MIN_IMAGES = 50


def reference_in_folder(folder: Path, ref: Path, files: list[Path], resolved: Sequence[Path] | None = None) -> Path:
    """The reference file: one of the folder's image `files` (a relative path is looked up in the folder first),
    or any image file elsewhere, which is then indexed along with the folder. `resolved`: the files'
    `resolved_paths`, when the caller has them.

    Raises:
        InvalidArgument: no such file.
    """
    # A relative path is looked up in the folder first: with --recursive, rows name files by their path
    # inside the folder (`shown_name`), and such a name is accepted back.
    candidates = [ref] if ref.is_absolute() else [folder / ref, ref]
    by_resolved = dict(zip(resolved_paths(files) if resolved is None else resolved, files, strict=True))
    for candidate in candidates:
        if (found := by_resolved.get(candidate.resolve())) is not None:
            return found
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InvalidArgument(f"reference image {ref} is not an image in {folder}, nor a file")


def keep_label(rows: list[RankedImage], label: str | None) -> list[RankedImage]:
    """The rows whose stored predictions include the ImageNet class `label` (all of them without one).

    Raises:
        InvalidArgument: no ImageNet class has that name.
    """
    if not label:
        return rows
    wanted = resolve_label(label)
    return [r for r in rows if any(p.class_index in wanted for p in r.predictions)]


def rank_folder_local(
    settings: Settings,
    folder: Path,
    ref: Path,
    metric: str,
    show_progress: bool,
    *,
    recursive: bool = False,
    label: str | None = None,
) -> RankReport:
    """Ingest `folder` into the index at `settings.data_dir`, then rank its images against `ref`.

    Raises:
        InvalidArgument, ModelMismatch, UnknownModel, WeightsNotFound, ImageDecodeError.
    """
    started = time.perf_counter()
    files = list_image_files(folder, recursive)
    resolved = resolved_paths(files)
    ref_file = reference_in_folder(folder, ref, files, resolved)
    sources = ImageSource.from_paths(files, resolved)
    ref_source = ImageSource.from_path(ref_file)
    if ref_source.path not in {s.path for s in sources}:
        sources.append(ref_source)
    if label:
        resolve_label(label)  # an unknown class fails before any work
    with ImageIndex(settings) as index:
        bar = tqdm(total=len(files), unit="img", disable=not show_progress or len(files) < PROGRESS_MIN_IMAGES)
        with bar:
            results = index.ingest(sources, progress=bar.update)
        stored = {r.path: r for r in results if r.id is not None}
        skipped = [(r.name, str(r.error)) for r in results if r.status == "error"]
        ref_result = stored.get(ref_source.path)
        if ref_result is None or ref_result.id is None:
            why = next((w for n, w in skipped if n == ref_file.name), "could not be indexed")
            raise InvalidArgument(f"reference image {ref_file.name}: {why}")
        scores = dict(index.rank(ref_result.id, [r.id for r in stored.values() if r.id is not None], metric))
    rows = [
        RankedImage(shown_name(Path(path), folder, recursive), scores[r.id], r.predictions, path)
        for path, r in stored.items()
        if path != ref_source.path and r.id is not None
    ]
    rows = keep_label(rows, label)
    rows.sort(key=lambda r: (r.score if metric == "euclidean" else -r.score, r.file))
    return RankReport(
        reference_predictions=ref_result.predictions,
        reference_path=str(ref_file),
        reference=ref_file.name,
        metric=metric,
        rows=rows,
        added=sum(r.status == "added" for r in results),
        existing=sum(r.status == "exists" for r in results),
        restored=sum(r.status == "restored" for r in results),
        skipped=skipped,
        seconds=time.perf_counter() - started,
    )


def shown_name(path: Path, folder: Path, recursive: bool) -> str:
    """The file's name, or with --recursive its path inside the folder (names may repeat across subfolders)."""
    if not recursive:
        return path.name
    try:
        return str(path.relative_to(folder.resolve()))
    except ValueError:
        return path.name

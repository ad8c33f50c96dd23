"""Local mode: the CLI runs the library in-process against a data directory."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from client.report import RankedImage, RankReport
from index.config import Settings
from index.errors import InvalidArgument
from index.ingest import list_image_files
from index.pipeline import ImageSource
from index.search import resolve_label
from index.service import ImageIndex

PROGRESS_MIN_IMAGES = 50


def reference_in_folder(folder: Path, ref: Path, recursive: bool = False) -> Path:
    """The reference file: one of the folder's images (a bare name is looked up in the folder first), or any
    image file elsewhere, which is then indexed along with the folder.

    Raises:
        InvalidArgument: no such file.
    """
    files = list_image_files(folder, recursive)
    candidates = [folder / ref, ref] if ref.parent == Path() else [ref]
    for candidate in candidates:
        resolved = candidate.resolve()
        for f in files:
            if f.resolve() == resolved:
                return f
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
    ref_file = reference_in_folder(folder, ref, recursive)
    files = list_image_files(folder, recursive)
    inside = any(f.resolve() == ref_file.resolve() for f in files)
    if label:
        resolve_label(label)  # an unknown class fails before any work
    with ImageIndex(settings) as index:
        bar = tqdm(total=len(files), unit="img", disable=not show_progress or len(files) < PROGRESS_MIN_IMAGES)
        with bar:
            sources = [ImageSource.from_path(f) for f in files]
            results = index.ingest(
                sources if inside else [*sources, ImageSource.from_path(ref_file)], progress=bar.update
            )
        ids = {Path(r.path): r.id for r in results if r.id is not None}
        skipped = [(r.name, str(r.error)) for r in results if r.status == "error"]
        ref_id = ids.get(ref_file.resolve())
        if ref_id is None:
            why = next((w for n, w in skipped if n == ref_file.name), "could not be indexed")
            raise InvalidArgument(f"reference image {ref_file.name}: {why}")
        scores = dict(index.rank(ref_id, list(ids.values()), metric))
        infos = index.store.get_many(list(set(ids.values())))
        rows = [
            RankedImage(shown_name(path, folder, recursive), scores[image_id], infos[image_id].predictions, str(path))
            for path, image_id in ids.items()
            if path != ref_file.resolve()
        ]
    rows = keep_label(rows, label)
    rows.sort(key=lambda r: (r.score if metric == "euclidean" else -r.score, r.file))
    return RankReport(
        reference_predictions=infos[ref_id].predictions,
        reference_path=str(ref_file),
        reference=ref_file.name,
        metric=metric,
        rows=rows,
        added=sum(r.status == "added" for r in results),
        existing=sum(r.status == "exists" for r in results),
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

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
from index.service import ImageIndex

PROGRESS_MIN_IMAGES = 50


def reference_in_folder(folder: Path, ref: Path) -> Path:
    """The reference file, which must be one of the folder's images.

    Raises:
        InvalidArgument: it is not.
    """
    files = list_image_files(folder)
    candidate = ref if ref.parent != Path() else folder / ref
    resolved = candidate.resolve()
    for f in files:
        if f.resolve() == resolved:
            return f
    raise InvalidArgument(f"reference image {ref} is not an image in {folder}")


def rank_folder_local(settings: Settings, folder: Path, ref: Path, metric: str, show_progress: bool) -> RankReport:
    """Ingest `folder` into the index at `settings.data_dir`, then rank its images against `ref`.

    Raises:
        InvalidArgument, ModelMismatch, UnknownModel, WeightsNotFound, ImageDecodeError.
    """
    started = time.perf_counter()
    ref_file = reference_in_folder(folder, ref)
    files = list_image_files(folder)
    with ImageIndex(settings) as index:
        bar = tqdm(total=len(files), unit="img", disable=not show_progress or len(files) < PROGRESS_MIN_IMAGES)
        with bar:
            results = index.ingest([ImageSource.from_path(f) for f in files], progress=bar.update)
        ids = {Path(r.path): r.id for r in results if r.id is not None}
        skipped = [(r.name, str(r.error)) for r in results if r.status == "error"]
        ref_id = ids.get(ref_file.resolve())
        if ref_id is None:
            why = next((w for n, w in skipped if n == ref_file.name), "could not be indexed")
            raise InvalidArgument(f"reference image {ref_file.name}: {why}")
        scores = dict(index.rank(ref_id, list(ids.values()), metric))
        infos = index.store.get_many(list(set(ids.values())))
        rows = [
            RankedImage(path.name, scores[image_id], infos[image_id].predictions)
            for path, image_id in ids.items()
            if path != ref_file.resolve()
        ]
    rows.sort(key=lambda r: (r.score if metric == "euclidean" else -r.score, r.file))
    return RankReport(
        reference=ref_file.name,
        metric=metric,
        rows=rows,
        added=sum(r.status == "added" for r in results),
        existing=sum(r.status == "exists" for r in results),
        skipped=skipped,
        seconds=time.perf_counter() - started,
    )

"""`find-duplicates`: ingest a folder, then print its groups of near-duplicate images (or write them, or move
all but the kept image of each group). The grouping is the library's (`index.duplicates`)."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from client.cli import _fail, _settings, exit_now
from client.local import PROGRESS_MIN_IMAGES
from client.report import FileCopy, FileGroup, duplicates_csv, duplicates_json, format_duplicates, terminal_text
from index.duplicates import DuplicateReport
from index.errors import ImgsimError, InvalidArgument
from index.ingest import list_image_files
from index.pipeline import ImageSource

DESCRIPTION = """Find groups of near-duplicate images in a folder.

The folder is ingested into the persistent index first (only content the index has not seen is embedded);
then its images are grouped: every image of a group is within the threshold of the one to keep (the largest
resolution, then the oldest). Nothing is moved or deleted unless --move-to is given.

levels (duplicate similarity thresholds, calibrated per embedding definition):
  exact    the same photo, resized or recompressed
  near     edited copies: crops, recompression, mirroring, overlays, colour changes (default)
  similar  looser: more copies found, and some different photos of one scene

example:
  find-duplicates --images_folder photos --recursive
  find-duplicates --images_folder photos --json > groups.json
  find-duplicates --images_folder photos --html report.html --move-to photos-duplicates
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="find-duplicates", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images_folder", default="images", help="folder of images (default: images)")
    p.add_argument("--data_dir", default=None, help="index location (default: $IMGSIM_DATA_DIR or data)")
    p.add_argument("--model", default=None, help="model name (default: $IMGSIM_MODEL or efficientnet_lite0)")
    p.add_argument("--level", default=None, help="exact, near (default) or similar")
    p.add_argument("--threshold", type=float, default=None, help="a duplicate similarity in [0, 1] instead of --level")
    p.add_argument("--recursive", action="store_true", help="also the images in subfolders")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text")
    p.add_argument("--csv", action="store_true", help="print CSV (one row per file) instead of the text")
    p.add_argument("--html", default=None, metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--move-to", dest="move_to", default=None, metavar="DIR", help="move all but the kept file")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    return p


def file_groups(report: DuplicateReport, ids: dict[Path, int]) -> list[FileGroup]:
    """The library's groups as files of the folder; groups with fewer than two of its files are left out."""
    files_of: dict[int, list[Path]] = {}
    for path, image_id in ids.items():
        files_of.setdefault(image_id, []).append(path)
    out = []
    for group in report.groups:
        files = [
            FileCopy(m.image.id, path.name, str(path), m.similarity, False)
            for m in group.members
            for path in sorted(files_of.get(m.image.id, []))
        ]
        if len(files) < 2:
            continue
        kept = next((n for n, f in enumerate(files) if f.id == group.keep), 0)
        files.insert(0, files.pop(kept))
        files[0] = FileCopy(files[0].id, files[0].filename, files[0].path, 1.0, True)
        out.append(FileGroup(files[0].id, files))
    out.sort(key=lambda g: -len(g.files))
    return out


def free_name(folder: Path, name: str) -> Path:
    """`folder / name`, or with ' (1)', ' (2)'... before the suffix when that exists: nothing is overwritten."""
    target = folder / name
    stem, suffix, n = Path(name).stem, Path(name).suffix, 1
    while target.exists():
        target = folder / f"{stem} ({n}){suffix}"
        n += 1
    return target


def move_copies(groups: Sequence[FileGroup], folder: Path) -> list[tuple[Path, Path]]:
    """Move every file but the kept one of each group into `folder`; returns (from, to) per file moved."""
    folder.mkdir(parents=True, exist_ok=True)
    moved = []
    for group in groups:
        for f in group.files[1:]:
            source = Path(f.path)
            if not source.exists():
                continue
            target = free_name(folder, source.name)
            shutil.move(source, target)
            moved.append((source, target))
    return moved


def find_duplicates(args: argparse.Namespace) -> tuple[float, list[FileGroup]]:
    """Ingest the folder and group its images.

    Raises:
        InvalidArgument, ModelMismatch, UnknownModel, WeightsNotFound.
    """
    from index.service import ImageIndex

    folder = Path(args.images_folder)
    files = list_image_files(folder, recursive=args.recursive)
    with ImageIndex(_settings(args)) as index:
        index.duplicates.space.resolve(args.level, args.threshold)  # bad input fails before any work
        show = not args.quiet and len(files) >= PROGRESS_MIN_IMAGES
        with tqdm(total=len(files), unit="img", disable=not show) as bar:
            results = index.ingest(ImageSource.from_paths(files), progress=bar.update)
        for r in results:
            if r.status == "error":
                print(f"skipped {terminal_text(r.name)}: {terminal_text(str(r.error))}", file=sys.stderr)
        ids = {Path(f): r.id for f, r in zip(files, results, strict=True) if r.id is not None}
        report = index.duplicate_groups(args.level, args.threshold, among=set(ids.values()))
    return report.threshold, file_groups(report, ids)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `find-duplicates`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.json and args.csv:
        return _fail("give --json or --csv, not both")
    try:
        if args.move_to and Path(args.move_to).exists() and not Path(args.move_to).is_dir():
            raise InvalidArgument(f"--move-to {args.move_to} exists and is not a folder")
        threshold, groups = find_duplicates(args)
        if args.html:
            from client.html import duplicates_html

            Path(args.html).write_text(duplicates_html(groups, threshold), encoding="utf-8")
    except ImgsimError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    if args.json:
        print(duplicates_json(threshold, groups))
    elif args.csv:
        print(duplicates_csv(groups), end="")
    else:
        print(format_duplicates(threshold, groups))
    if args.move_to:
        try:
            moved = move_copies(groups, Path(args.move_to))
        except OSError as exc:
            return _fail(f"moving failed: {exc}")
        for source, target in moved:
            shown = f"moved {terminal_text(str(source))} -> {terminal_text(str(target))}"
            print(shown, file=sys.stderr if args.json or args.csv else sys.stdout)
    return 0


def run() -> NoReturn:
    """Console script `find-duplicates`."""
    exit_now(main())


if __name__ == "__main__":
    run()

"""`find-duplicates`: ingest a folder, then print its groups of near-duplicate images (or write them, or move
all but the kept image of each group, and back). The grouping is the library's (`index.duplicates`); moving
is `client.moves`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from tqdm import tqdm

from client.cli import INTERRUPTED, _fail, _settings, add_version, exit_now, served_api
from client.local import PROGRESS_MIN_IMAGES
from client.moves import LeftFile, Move, move_duplicates, target_inside, undo_moves
from client.progress import show_model_preparation
from client.remote_duplicates import FoundGroup, FoundMember, StoredFile
from client.report import (
    DuplicatesHeader,
    FileCopy,
    FileGroup,
    duplicates_csv,
    duplicates_json,
    format_duplicates,
    terminal_text,
)
from index.duplicates import LEVEL_MEANINGS, Criterion, describe_group
from index.duplicates.verifier import identical_bytes
from index.errors import ImgsimError, InvalidArgument
from index.ingest import list_image_files
from index.pipeline import ImageSource

DESCRIPTION = """Find groups of near-duplicate images in a folder.

The folder is ingested into the persistent index first (only content the index has not seen is embedded);
then its images are grouped: every image of a group is a duplicate of the one to keep (the largest
resolution, then the larger file, then the richer EXIF, then the oldest), not only of another member.
Nothing is moved unless --move-to is given; nothing is ever deleted or overwritten. Pairs a person said are
not duplicates (the web page's "Keep all", POST /duplicates/dismiss) are never grouped.

When a running API serves the data directory (or --api_url names one), the folder goes through it: only the
files the server lacks are uploaded, the groups of the folder's images come from POST /duplicates/among, and
the output is the same; --move-to and --undo still move the files here.

--move-to DIR moves every file but the kept one of each group into DIR (a name taken there gets " (1)",
" (2)"...). It never moves the kept file, a hard or symbolic link to it, nor any symbolic link (it holds no
bytes of its own). Each file is checked right before it moves: its size and SHA-256, and its kept file's,
must still be those ingested, or it stays in place and is reported. DIR may not be the folder nor inside it
(refused before anything is done): a later scan would find the moved copies beside the originals, and
could then keep a copy and move an original away. Every move is recorded before it happens in a manifest in
DIR (find-duplicates-DATE-TIME.json: the folder, DIR, the times, and per move from, to, sha256, size,
group, kept file), whose path is printed; a run that stops half-way leaves it listing every move done.
--undo MANIFEST puts the files back, each checked to be the same bytes; a path taken again is reported and
skipped. Exit code 1 when a file could not be moved (or put back), 130 on Ctrl-C.

levels (what counts as a duplicate):
  exact    the same picture: identical bytes, or identical pixels once decoded and turned upright (EXIF)
  near     copies of one capture (default): resized, recompressed, cropped, mirrored, rotated a little,
           recoloured, greyscale, with text, a logo or a border added, or a screenshot of it; each pair is
           checked on its pixels (aligned local features, then the residual optical flow), so another photo
           of the same thing, even taken moments apart, is not a copy
  similar  the same scene or object, also in other captures (burst shots, another viewpoint): similar photos,
           not copies; --move-to refuses them
  --threshold T groups photos at least T similar (0.5 to 1; nothing checked on the pixels, like similar)

example:
  find-duplicates --images_folder photos --recursive
  find-duplicates --images_folder photos --json > groups.json
  find-duplicates --images_folder photos --html report.html --move-to photos-duplicates
  find-duplicates --undo photos-duplicates/find-duplicates-20250101-120000.json
  find-duplicates --images_folder photos --api_url http://127.0.0.1:8080
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="find-duplicates", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images_folder", default="images", help="folder of images (default: images)")
    p.add_argument("--data_dir", default=None, help="index location (default: $IMGSIM_DATA_DIR or data)")
    p.add_argument("--model", default=None, help="model name (default: $IMGSIM_MODEL or efficientnet_lite0)")
    p.add_argument("--level", default=None, help="exact, near (default) or similar")
    p.add_argument(
        "--threshold", type=float, default=None, help="a duplicate similarity in [0.5, 1] instead of --level"
    )
    p.add_argument("--recursive", action="store_true", help="also the images in subfolders")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text")
    p.add_argument("--csv", action="store_true", help="print CSV (one row per file) instead of the text")
    p.add_argument("--html", default=None, metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument(
        "--move-to",
        dest="move_to",
        default=None,
        metavar="DIR",
        help="move all but the kept file of each group into DIR (outside the folder), writing a manifest there",
    )
    p.add_argument(
        "--undo", default=None, metavar="MANIFEST", help="put back the files a --move-to manifest lists, and stop"
    )
    p.add_argument("--api_url", default=None, help="use this running imgsim API (default: the one serving --data_dir)")
    p.add_argument("--api_key", default=None, help="API key for the API (default: $IMGSIM_API_KEY)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    add_version(p)
    return p


def file_groups(groups: Sequence[FoundGroup], stored: dict[Path, StoredFile]) -> list[FileGroup]:
    """The groups as files of the folder (`stored`: the stored image each file is); groups with fewer than two of
    its files are left out, and the folder's byte copies of one image that no group holds make a group of their
    own. Of the files of the kept image, the one kept is the first that is not a symbolic link. The reason counts
    the folder's files, so it reads the same whatever else the library holds."""
    files_of: dict[int, list[Path]] = {}
    for path, found in stored.items():
        files_of.setdefault(found.id, []).append(path)
    grouped = {m.id for g in groups for m in g.members}
    singles = [
        FoundGroup(i, None, True, [FoundMember(i, 1.0, paths[0].stat().st_size, identical_bytes())])
        for i, paths in files_of.items()
        if len(paths) > 1 and i not in grouped
    ]
    out = []
    for group in [*groups, *singles]:
        files = [
            FileCopy(
                m.id,
                path.name,
                str(path),
                m.similarity,
                False,
                stored[path].sha256,
                m.byte_size,
                m.evidence.kind if m.evidence is not None else "",
            )
            for m in group.members
            for path in sorted(files_of.get(m.id, []))
        ]
        if len(files) < 2:
            continue
        of_kept = [n for n, f in enumerate(files) if f.id == group.keep]
        kept = min(of_kept, key=lambda n: (Path(files[n].path).is_symlink(), n)) if of_kept else 0
        files.insert(0, files.pop(kept))
        k = files[0]
        files[0] = FileCopy(k.id, k.filename, k.path, 1.0, True, k.sha256, k.size)
        others = group.members[1:]
        reason = describe_group(group.level, len(files), [m.similarity for m in others], [m.evidence for m in others])
        out.append(FileGroup(k.id, files, group.copies, reason))
    out.sort(key=lambda g: (-len(g.files), g.keep))
    return out


def refuse_unproven_moves(criterion: Criterion) -> None:
    """Raises InvalidArgument: --move-to with a criterion whose pairs are not proven copies."""
    if not criterion.verified:
        raise InvalidArgument(
            "--move-to moves only proven copies (--level near or exact): similar photos are not copies"
        )


def serving_api(args: argparse.Namespace) -> tuple[str, str | None] | None:
    """The API to go through (`--api_url`, else the one serving the data directory, said on stderr) and its key;
    None for the index itself.

    Raises:
        InvalidSettings: the settings are invalid.
    """
    settings = _settings(args)
    api_url = served_api(settings, args.api_url)
    return (api_url, args.api_key or settings.api_key) if api_url else None


def find_duplicates(args: argparse.Namespace) -> tuple[DuplicatesHeader, list[FileGroup]]:
    """Ingest the folder and group its images, on the index itself or through the API serving it.

    Raises:
        InvalidArgument, ModelMismatch, UnknownModel, WeightsNotFound, ApiError.
    """
    folder = Path(args.images_folder)
    files = list_image_files(folder, recursive=args.recursive)
    check = refuse_unproven_moves if args.move_to else (lambda _: None)
    api = serving_api(args)
    if api is not None:
        from client.remote_duplicates import group_folder_remote

        found = group_folder_remote(
            api[0], files, args.level, args.threshold, check=check, api_key=api[1], show_progress=not args.quiet
        )
        criterion, stored, groups, skipped = found.criterion, found.stored, found.groups, found.skipped
    else:
        criterion, stored, groups, skipped = _group_locally(args, files, check)
    for name, why in skipped:
        print(f"skipped {terminal_text(name)}: {terminal_text(why)}", file=sys.stderr)
    header = DuplicatesHeader(criterion.level, criterion.threshold, describe(criterion.level, criterion.threshold))
    return header, file_groups(groups, stored)


def _group_locally(
    args: argparse.Namespace, files: list[Path], check: Callable[[Criterion], None]
) -> tuple[Criterion, dict[Path, StoredFile], list[FoundGroup], list[tuple[str, str]]]:
    from index.service import ImageIndex

    with ImageIndex(_settings(args)) as index:
        criterion = index.duplicates.space.resolve(args.level, args.threshold)  # bad input fails before any work
        check(criterion)
        show = not args.quiet and len(files) >= PROGRESS_MIN_IMAGES
        with tqdm(total=len(files), unit="img", disable=not show) as bar:
            results = index.ingest(ImageSource.from_paths(files), progress=bar.update)
        skipped = [(r.name, str(r.error)) for r in results if r.status == "error"]
        stored = {
            Path(f): StoredFile(r.id, r.sha256 or "") for f, r in zip(files, results, strict=True) if r.id is not None
        }
        report = index.duplicate_groups(args.level, args.threshold, among={s.id for s in stored.values()})
    return criterion, stored, [FoundGroup.of(g) for g in report.groups], skipped


def describe(level: str | None, threshold: float) -> str:
    return LEVEL_MEANINGS[level] if level else f"photos at least {threshold:.2f} similar, nothing checked"


def check_move_target(folder: Path, target: Path) -> None:
    """Refuse a --move-to folder that cannot take the moved copies safely.

    Raises:
        InvalidArgument: it is a file, or the scanned folder or inside it.
    """
    if target.exists() and not target.is_dir():
        raise InvalidArgument(f"--move-to {target} exists and is not a folder")
    if target_inside(folder, target):
        raise InvalidArgument(
            f"--move-to {target} is inside the scanned folder {folder}: a later scan would find the moved copies "
            "beside the originals; choose a folder outside it"
        )


def move_found(groups: Sequence[FileGroup], folder: Path, target: Path, out: TextIO) -> int:
    """Move all but the kept file of each group into `target`, print each move (on `out`) and each file left
    (on stderr), and the manifest's path; the exit code.

    Raises:
        OSError: `target` or its manifest could not be created (nothing was moved).
    """

    def moved(m: Move) -> None:
        print(f"moved {terminal_text(str(m.source))} -> {terminal_text(str(m.target))}", file=out, flush=True)

    def left(f: LeftFile) -> None:
        print(f"left {terminal_text(str(f.path))}: {terminal_text(f.reason)}", file=sys.stderr, flush=True)

    report = move_duplicates(groups, folder, target, on_move=moved, on_left=left)
    if report.manifest is None:
        return 0
    n = len(report.moved)
    files = f"{n} {'file' if n == 1 else 'files'}"
    print(
        f"{files} moved to {target}; manifest {report.manifest} "
        f"(find-duplicates --undo {report.manifest} puts them back)",
        file=out,
    )
    if report.interrupted:
        print(f"interrupted after {files} moved: the manifest {report.manifest} lists them", file=sys.stderr)
        return INTERRUPTED
    if report.stopped:
        return _fail(f"{report.stopped}; stopped after {files} moved")
    failed = sum(f.kind != "same file" for f in report.left)
    if failed:
        return _fail(
            f"{failed} {'file was' if failed == 1 else 'files were'} left in place (listed above and in the manifest)"
        )
    return 0


def undo(manifest: Path) -> int:
    """`--undo`: put the moved files back, print what was done; the exit code.

    Raises:
        InvalidArgument: `manifest` is not a readable manifest.
    """

    def restored(m: Move) -> None:
        print(f"restored {terminal_text(str(m.target))} -> {terminal_text(str(m.source))}", flush=True)

    try:
        report = undo_moves(manifest, on_restore=restored)
    except KeyboardInterrupt:
        print(f"interrupted: --undo {manifest} again finishes the job", file=sys.stderr)
        return INTERRUPTED
    for f in report.left:
        print(f"left {terminal_text(str(f.path))}: {terminal_text(f.reason)}", file=sys.stderr)
    print(
        f"{len(report.restored)} restored, {report.already} already back, {len(report.left)} left; "
        f"manifest {manifest} {'not ' if report.saved else ''}updated"
    )
    if report.saved:
        return _fail(report.saved)
    if report.left:
        n = len(report.left)
        return _fail(f"{n} {'file was' if n == 1 else 'files were'} not put back (listed above)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `find-duplicates`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    show_model_preparation(bar=not args.quiet)
    if args.json and args.csv:
        return _fail("give --json or --csv, not both")
    if args.undo:
        if args.move_to:
            return _fail("give --move-to or --undo, not both")
        try:
            return undo(Path(args.undo))
        except ImgsimError as exc:
            return _fail(str(exc))
    try:
        if args.move_to:
            check_move_target(Path(args.images_folder), Path(args.move_to))  # before any work
        header, groups = find_duplicates(args)
        if args.html:
            from client.html import duplicates_html

            Path(args.html).write_text(duplicates_html(groups, header), encoding="utf-8")
    except ImgsimError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    except KeyboardInterrupt:
        moved = "; nothing was moved" if args.move_to else ""
        print(f"interrupted: the images stored before Ctrl-C are kept{moved}", file=sys.stderr)
        return INTERRUPTED
    if args.json:
        print(duplicates_json(header, groups))
    elif args.csv:
        print(duplicates_csv(groups), end="")
    else:
        print(format_duplicates(header, groups))
    if args.move_to:
        try:
            return move_found(
                [g for g in groups if g.copies],
                Path(args.images_folder),
                Path(args.move_to),
                sys.stderr if args.json or args.csv else sys.stdout,
            )
        except OSError as exc:
            return _fail(f"nothing moved: cannot write in {args.move_to}: {exc.strerror or exc}")
    return 0


def run() -> NoReturn:
    """Console script `find-duplicates`."""
    exit_now(main())


if __name__ == "__main__":
    run()

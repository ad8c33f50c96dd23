"""`imgsim`: the library without a folder scan: search by an image, list, remove, prune, stats, and serve the API.

Each subcommand parses its arguments, asks the library (`client.library`: the index in the data directory, or
the API serving it) and prints the answer; the work itself is the library's (`index`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

from client.cli import INTERRUPTED, _settings, add_version, exit_now, served_api
from client.library import ApiLibrary, Library, LibraryImage, LibraryStats, LocalLibrary
from client.progress import show_model_preparation
from client.report import _predictions_json, format_table, rank_csv, rank_json, shown_predictions, terminal_text
from index.config import get_settings
from index.errors import ImgsimError
from index.storage.lock import serving_url

MAX_TOP_K = 1000  # the API's largest k
MAX_PAGE = 1000

DESCRIPTION = """The image library without a folder scan: search it by an image, list, remove and prune its images,
show its numbers, serve it as the API.

Every subcommand but serve goes through the API when one serves the data directory (it says so on stderr),
or --api_url; otherwise it opens the index itself.

example:
  imgsim search ~/Downloads/query.jpg --top_k 5
  imgsim search --ref cat.png --json
  imgsim list --limit 20
  imgsim remove cat_grey.png
  imgsim prune --dry-run
  imgsim stats
  imgsim serve --port 8080
"""

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    # name: (help, example)
    "search": (
        "rank the stored images by similarity to an image file (not stored) or to a stored image (--ref)",
        "imgsim search ~/query.jpg --top_k 5\n  imgsim search --ref cat.png --label tabby --csv",
    ),
    "list": ("list the stored images (not the trash), in id order, a page at a time", "imgsim list --limit 20"),
    "remove": (
        "move a stored image to the trash (named by id, SHA-256 or file name); restore brings it back",
        "imgsim remove 3\n  imgsim remove cat_grey.png",
    ),
    "restore": ("take an image out of the trash, under its id", "imgsim restore 3"),
    "prune": (
        "move to the trash the images whose recorded files are all gone from disk (never an uploaded one)",
        "imgsim prune --dry-run\n  imgsim prune",
    ),
    "stats": ("how many images, the model, the index", "imgsim stats --json"),
    "serve": (
        "run the API on this data directory (python -m app.serve with the same settings)",
        "imgsim serve --data_dir data --host 127.0.0.1 --port 8080",
    ),
}


class OneLineParser(argparse.ArgumentParser):
    """A parser whose every usage error is one line on stderr and exit code 1, as every other error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(1)


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="imgsim", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(p)
    index_options = argparse.ArgumentParser(add_help=False)
    index_options.add_argument("--data_dir", default=None, help="index location (default: $IMGSIM_DATA_DIR or data)")
    index_options.add_argument("--model", default=None, help="model name (default: $IMGSIM_MODEL)")
    index_options.add_argument("--embedding", default=None, help="embedding definition (default: the index's)")
    api_options = argparse.ArgumentParser(add_help=False)
    api_options.add_argument("--api_url", default=None, help="use this running imgsim API")
    api_options.add_argument("--api_key", default=None, help="API key for the API (default: $IMGSIM_API_KEY)")
    commands: argparse._SubParsersAction[argparse.ArgumentParser] = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )

    def command(name: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        what, example = SUBCOMMANDS[name]
        return commands.add_parser(
            name,
            parents=[index_options, *parents],
            help=what,
            description=f"{what[0].upper()}{what[1:]}.\n\nexample:\n  {example}\n",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    search = command("search", api_options)
    search.add_argument("image", nargs="?", metavar="IMAGE", help="an image file anywhere on disk (it is not stored)")
    search.add_argument("--ref", default=None, metavar="ID_OR_NAME", help="a stored image: id, SHA-256 or file name")
    search.add_argument("--top_k", type=int, default=10, help=f"rows to print, 1 to {MAX_TOP_K} (default: 10)")
    search.add_argument("--metric", choices=["cosine", "euclidean", "dot"], default="cosine", help="(default: cosine)")
    search.add_argument("--label", default=None, help="keep images whose predictions include this ImageNet class")
    search.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    search.add_argument("--csv", action="store_true", help="print CSV instead of the table")

    listing = command("list", api_options)
    listing.add_argument("--limit", type=int, default=50, help=f"images to list, 1 to {MAX_PAGE} (default: 50)")
    listing.add_argument("--offset", type=int, default=0, help="images to skip first (default: 0)")
    listing.add_argument("--json", action="store_true", help="print one JSON object instead of the table")

    remove = command("remove", api_options)
    remove.add_argument("ref", metavar="ID_OR_NAME", help="the image: id, SHA-256 or file name")

    restore = command("restore", api_options)
    restore.add_argument("id", type=int, metavar="ID", help="the id of an image in the trash")

    prune = command("prune", api_options)
    prune.add_argument("--dry-run", action="store_true", help="only print what would be moved to the trash")

    stats = command("stats", api_options)
    stats.add_argument("--json", action="store_true", help="print one JSON object")

    serve = command("serve")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    return p


def _fail(message: str) -> int:
    print(f"error: {terminal_text(message)}", file=sys.stderr)
    return 1


def open_library(args: argparse.Namespace) -> Library:
    """The API that serves the data directory (or `--api_url`), else the index itself.

    Raises:
        InvalidSettings, DataDirLocked, ModelMismatch...: the index cannot be opened.
    """
    settings = _settings(args)
    api_url = served_api(settings, args.api_url)
    if api_url:
        return ApiLibrary(api_url, api_key=args.api_key or settings.api_key)
    show_model_preparation()
    return LocalLibrary(settings)


# --- the subcommands: each checks its arguments, asks the library, prints ----------------------------------


def search(args: argparse.Namespace) -> int:
    if (args.image is None) == (args.ref is None):
        return _fail("give an IMAGE file or --ref ID_OR_NAME (one of the two)")
    if not 1 <= args.top_k <= MAX_TOP_K:
        return _fail(f"--top_k must be between 1 and {MAX_TOP_K}")
    if args.json and args.csv:
        return _fail("give --json or --csv, not both")
    file = Path(args.image).expanduser() if args.image is not None else None
    if file is not None and file.is_dir():
        return _fail(f"{file} is a folder; give an image file (similarity_analysis ranks a folder)")
    if file is not None and not file.is_file():
        return _fail(f"no such file: {file}")
    with closing(open_library(args)) as library:
        if file is not None:
            report = library.search_file(file, args.top_k, args.metric, args.label)
        else:
            report = library.search_ref(args.ref, args.top_k, args.metric, args.label)
    if args.json:
        print(rank_json(report))
    elif args.csv:
        print(rank_csv(report), end="")
    else:
        print(format_table(report))
    return 0


def _image_json(image: LibraryImage) -> dict[str, object]:
    out = asdict(image)
    out["predictions"] = _predictions_json(image.predictions)
    if not image.paths:
        del out["paths"]
    return out


def _images_table(images: Sequence[LibraryImage]) -> str:
    header = ("id", "file", "size", "format", "top predictions")
    rows = [
        (str(i.id), terminal_text(i.filename), f"{i.width}x{i.height}", i.format, shown_predictions(i.predictions))
        for i in images
    ]
    widths = [max(len(h), *(len(row[n]) for row in rows)) if rows else len(h) for n, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
    return "\n".join(lines)


def list_images(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= MAX_PAGE or args.offset < 0:
        return _fail(f"--limit must be between 1 and {MAX_PAGE}, --offset 0 or more")
    with closing(open_library(args)) as library:
        total, images = library.list_images(args.offset, args.limit)
    if args.json:
        body = {"total": total, "offset": args.offset, "limit": args.limit, "items": [_image_json(i) for i in images]}
        print(json.dumps(body, indent=2))
        return 0
    print(_images_table(images))
    shown = f"{args.offset + 1}-{args.offset + len(images)}" if images else "none"
    print(f"\nimages {shown} of {total} (the trash left out)", file=sys.stderr)
    return 0


def _named(image: LibraryImage) -> str:
    return f"image {image.id} ({terminal_text(image.filename)})"


def remove(args: argparse.Namespace) -> int:
    with closing(open_library(args)) as library:
        image = library.remove(args.ref)
    print(f"moved {_named(image)} to the trash; `imgsim restore {image.id}` brings it back")
    return 0


def restore(args: argparse.Namespace) -> int:
    with closing(open_library(args)) as library:
        image = library.restore(args.id)
    print(f"restored {_named(image)} from the trash")
    return 0


def prune(args: argparse.Namespace) -> int:
    with closing(open_library(args)) as library:
        pruned = library.prune(args.dry_run)
    verb = "would move" if args.dry_run else "moved"
    for image in pruned:
        gone = ", ".join(terminal_text(p) for p in image.paths)
        print(f"{verb} {_named(image)} to the trash: {gone} gone")
    n = len(pruned)
    images = f"{n} {'image' if n == 1 else 'images'}"
    if not pruned:
        print("nothing to prune: every image has a file on disk, or was uploaded")
    elif args.dry_run:
        print(f"{images} would be moved to the trash; nothing was moved (run without --dry-run to move them)")
    else:
        print(f"{images} moved to the trash; `imgsim restore ID` brings one back")
    return 0


def _stats_lines(stats: LibraryStats) -> list[tuple[str, str]]:
    kept = f"{stats.trash_retention_days} days" if stats.trash_retention_days else "until emptied"
    return [
        ("images", str(stats.count)),
        ("in the trash", f"{stats.trashed} (kept {kept})"),
        ("model", f"{stats.model} ({stats.embedding}, {stats.dim} dimensions)"),
        ("index", stats.index_type),
        ("engine", stats.engine),
    ]


def stats(args: argparse.Namespace) -> int:
    with closing(open_library(args)) as library:
        numbers = library.stats()
    if args.json:
        print(json.dumps(asdict(numbers), indent=2))
        return 0
    if isinstance(library, ApiLibrary):
        where = ("api", str(library.http.base_url))
    else:
        where = ("data dir", str(_settings(args).data_dir))
    lines = [*_stats_lines(numbers), where]
    width = max(len(name) for name, _ in lines)
    print("\n".join(f"{name.ljust(width)}  {terminal_text(value)}" for name, value in lines))
    return 0


def serve(args: argparse.Namespace) -> int:
    settings = _settings(args)  # invalid settings are one line here, before uvicorn starts
    url = serving_url(settings.data_dir)
    if url:
        return _fail(f"{settings.data_dir} is already served by the API at {url}")
    # The server reads its settings from the environment, once (`get_settings`), as under uvicorn or in Docker;
    # the options given here reach it, and any worker processes it starts, that way.
    for name, value in (("DATA_DIR", args.data_dir), ("MODEL", args.model), ("EMBEDDING", args.embedding)):
        if value is not None:
            os.environ[f"IMGSIM_{name}"] = str(value)
    get_settings.cache_clear()
    # The server records the address it listens on beside the data directory's lock, read from the command
    # line (`app.lifecycle.listen_address`): the one given here, with the defaults written out.
    sys.argv = [sys.argv[0], "serve", "--host", args.host, "--port", str(args.port)]
    from app.serve import main as serve_main

    try:
        serve_main(["--host", args.host, "--port", str(args.port)])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "search": search,
    "list": list_images,
    "remove": remove,
    "restore": restore,
    "prune": prune,
    "stats": stats,
    "serve": serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `imgsim`."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 1
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except ImgsimError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED


def run() -> NoReturn:
    """Console script `imgsim`."""
    exit_now(main())


if __name__ == "__main__":
    run()

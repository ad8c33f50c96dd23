"""`similarity_analysis` and `rebuild-index`: parse arguments, call the library, print tables."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from client.progress import show_model_preparation
from client.report import RankReport, format_table, rank_csv, rank_json, terminal_text
from index import __version__
from index.config import Settings
from index.errors import ImgsimError
from index.startup import follow_recorded_embedding, load_settings

INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)

DESCRIPTION = """Rank every image of a folder by similarity to a reference image.

The folder is ingested into a persistent index first (only content the index has not seen is embedded),
then each image is scored against the reference.

example:
  python similarity_analysis.py --images_folder images --ref_image cat.png --top_k 5
  python similarity_analysis.py --api_url http://127.0.0.1:8080   # the same, through a running API
  python similarity_analysis.py --images_folder photos --recursive --ref_image ~/query.jpg --json
  python similarity_analysis.py --label "tabby" --html sheet.html
"""

REBUILD_DESCRIPTION = """Rebuild the vector index (FAISS file) from the SQLite store.

With --model, --embedding or --reembed, every embedding is first recomputed from the kept image bytes.
Without --embedding, the definition the index was built with is kept.

example:
  rebuild-index --data_dir data
  rebuild-index --data_dir data --model efficientnet_lite2 --reembed
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="similarity_analysis", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images_folder", default="images", help="folder of images to index and rank (default: images)")
    p.add_argument("--ref_image", default="cat.png", help="reference image, a file in the folder (default: cat.png)")
    p.add_argument("--top_k", type=int, default=10, help="rows to print; 0 prints every image (default: 10)")
    p.add_argument("--metric", choices=["cosine", "euclidean", "dot"], default="cosine", help="(default: cosine)")
    p.add_argument("--data_dir", default=None, help="index location (default: $IMGSIM_DATA_DIR or data)")
    p.add_argument("--model", default=None, help="model name (default: $IMGSIM_MODEL or efficientnet_lite0)")
    p.add_argument(
        "--embedding",
        default=None,
        help="embedding definition (default: $IMGSIM_EMBEDDING, else the one the index was built with)",
    )
    p.add_argument("--api_url", default=None, help="use a running imgsim API instead of the local index")
    p.add_argument("--api_key", default=None, help="API key for --api_url (default: $IMGSIM_API_KEY)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    p.add_argument("--recursive", action="store_true", help="also the images in subfolders")
    p.add_argument(
        "--label",
        default=None,
        help="keep images whose predictions include an ImageNet class this names: a class name or a word such as dog",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--csv", action="store_true", help="print CSV instead of the table")
    p.add_argument("--html", default=None, metavar="FILE", help="also write a contact sheet (self-contained HTML)")
    add_version(p)
    return p


def add_version(parser: argparse.ArgumentParser) -> None:
    """`--version`: the command's name and imgsim's version."""
    parser.add_argument("--version", action="version", version=f"%(prog)s (imgsim {__version__})")


def build_rebuild_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rebuild-index", description=REBUILD_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data_dir", default=None, help="index location (default: $IMGSIM_DATA_DIR or data)")
    p.add_argument("--model", default=None, help="switch to this model (implies --reembed when it differs)")
    p.add_argument("--embedding", default=None, help="switch to this embedding definition (mean, gem, gem+logits)")
    p.add_argument("--reembed", action="store_true", help="recompute every embedding from the kept images")
    p.add_argument("--index_kind", choices=["auto", "flat", "hnsw"], default=None, help="vector index type")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_version(p)
    return p


def served_api(settings: Settings, api_url: str | None) -> str | None:
    """The API to go through: `api_url` when given, else the one serving the data directory (said on stderr)."""
    if api_url:
        return api_url
    from index.storage.lock import serving_url

    served = serving_url(settings.data_dir)
    if served:
        print(f"{settings.data_dir} is served by the API at {served}: using it", file=sys.stderr)
    return served


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key, value in {
            "data_dir": getattr(args, "data_dir", None),
            "model": getattr(args, "model", None),
            "embedding": getattr(args, "embedding", None),
            "index_kind": getattr(args, "index_kind", None),
        }.items()
        if value is not None
    }
    # Validated like the environment, so a path given on the command line becomes a Path; an invalid value
    # (here or in IMGSIM_*) is one line naming the variable.
    return follow_recorded_embedding(load_settings(**overrides))


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `similarity_analysis`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    show_model_preparation(bar=not args.quiet)
    if args.top_k < 0:
        return _fail("--top_k must be 0 (all) or a positive number")
    if args.json and args.csv:
        return _fail("give --json or --csv, not both")
    folder, ref = Path(args.images_folder), Path(args.ref_image).expanduser()
    options = {"recursive": args.recursive, "label": args.label}
    try:
        settings = _settings(args)
        api_url = served_api(settings, args.api_url)
        if api_url:
            from client.remote import rank_folder_remote

            api_key = args.api_key or settings.api_key
            report = rank_folder_remote(api_url, folder, ref, args.metric, not args.quiet, api_key=api_key, **options)
        else:
            from client.local import rank_folder_local

            report = rank_folder_local(settings, folder, ref, args.metric, not args.quiet, **options)
        shown = report if args.top_k == 0 else RankReport(**{**report.__dict__, "rows": report.rows[: args.top_k]})
        if args.html:
            from client.html import contact_sheet_html

            Path(args.html).write_text(contact_sheet_html(shown), encoding="utf-8")
    except ImgsimError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write {args.html}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        print("interrupted: the images stored before Ctrl-C are kept", file=sys.stderr)
        return INTERRUPTED
    for file, why in report.skipped:
        print(f"skipped {terminal_text(file)}: {terminal_text(why)}", file=sys.stderr)
    if args.json:
        print(rank_json(shown))
    elif args.csv:
        print(rank_csv(shown), end="")
    else:
        print(format_table(shown))
    if not args.quiet:
        restored = f"{report.restored} restored from the trash, " if report.restored else ""
        print(
            f"\n{len(report.rows) + 1} images ranked; {report.added} embedded, {report.existing} already indexed, "
            f"{restored}{len(report.skipped)} skipped ({report.seconds:.1f} s)",
            file=sys.stderr,
        )
    return 0


class ReembedProgress:
    """The bar of `rebuild-index`'s re-embedding, drawn once the number of images is known."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.bar: Any = None

    def start(self, total: int) -> None:
        if self.show:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", desc="re-embedding", file=sys.stderr)

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def refuse_beside_a_server(data_dir: Path) -> None:
    """`rebuild-index` does not run beside the API serving `data_dir`: the API has no rebuild (it would have to
    swap the model and vector index it holds open while answering), so the server is stopped first.

    Raises:
        DataDirLocked: an API server holds the data directory (the message names it).
    """
    from index.errors import DataDirLocked
    from index.storage.lock import describe_holder, read_holder, serving_url

    if serving_url(data_dir):
        holder = read_holder(data_dir)
        raise DataDirLocked(
            f"{data_dir} is served by {describe_holder(holder)}: stop that server first, then run rebuild-index "
            "(the API cannot rebuild the index it holds open)",
            holder,
        )


def rebuild_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `rebuild-index`."""
    args = build_rebuild_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    show_model_preparation(bar=not args.quiet)
    from index.rebuild import rebuild_index

    started = time.perf_counter()
    bar = ReembedProgress(show=not args.quiet)
    try:
        settings = _settings(args)
        refuse_beside_a_server(settings.data_dir)
        report = rebuild_index(settings, reembed=args.reembed, progress=bar.update, on_count=bar.start)
    except ImgsimError as exc:
        bar.close()
        return _fail(str(exc))
    except KeyboardInterrupt:
        bar.close()
        print("interrupted: the index was left as it was", file=sys.stderr)
        return INTERRUPTED
    bar.close()
    print(
        f"rebuilt {settings.data_dir}: {report.count} vectors ({report.index_type}, {report.model}); "
        f"{report.reembedded} re-embedded, {report.failed} failed; {time.perf_counter() - started:.1f} s"
    )
    return 0


def exit_now(code: int) -> NoReturn:
    """Exit with `code`, skipping the interpreter's teardown once torch is loaded.

    Finalising the thousands of modules torch and timm bring in takes about a second on this class of
    machine, after all the work is done. Everything that matters is already committed: SQLite by its
    transactions, the FAISS file by `ImageIndex.close()`; the standard streams and logging are flushed here.
    """
    if "torch" not in sys.modules:
        raise SystemExit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run() -> NoReturn:
    """Console script `similarity-analysis`."""
    exit_now(main())


def run_rebuild() -> NoReturn:
    """Console script `rebuild-index`."""
    exit_now(rebuild_main())


if __name__ == "__main__":
    run()

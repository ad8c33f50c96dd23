"""`batch-ingest`: ingest a large folder on a Ray cluster (see index.batch)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from client.cli import add_version
from index.config import Settings, get_settings
from index.errors import ImgsimError

DESCRIPTION = """Ingest every image under a folder with Ray: several model workers embed in parallel, the driver
writes to the configured stores (IMGSIM_DATABASE_URL, IMGSIM_VECTOR_STORE, IMGSIM_BLOB_URL). A run that
stopped is resumed by running it again: stored paths are skipped, stored content is not embedded again.

example:
  python -m client.batch_ingest /photos --workers 2
  python -m client.batch_ingest /mnt/shared/photos --address auto   # on a running Ray cluster
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="batch-ingest", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("folder", help="folder of images (searched recursively)")
    p.add_argument("--workers", type=int, default=1, help="model actors embedding in parallel (default: 1)")
    p.add_argument("--batch_size", type=int, default=64, help="images per actor call (default: 64)")
    p.add_argument("--address", default=None, help="Ray cluster to join ('auto', 'ray://host:10001'); default: local")
    p.add_argument("--num_cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")
    p.add_argument("--data_dir", default=None, help="index location (default: $IMGSIM_DATA_DIR or data)")
    p.add_argument("--no_recursive", action="store_true", help="only the folder itself, not its subfolders")
    add_version(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from index.batch import batch_ingest

    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    settings = Settings(**{**get_settings().model_dump(), **overrides})
    try:
        report = batch_ingest(
            settings,
            Path(args.folder),
            workers=args.workers,
            batch_size=args.batch_size,
            recursive=not args.no_recursive,
            address=args.address,
            num_cpus=args.num_cpus,
        )
    except ImgsimError as exc:
        print(f"batch-ingest: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{report.files} files: {report.added} added, {report.existing} already stored, "
        f"{report.restored} restored from the trash, {report.failed} failed, "
        f"{report.skipped} skipped (stored by an earlier run); {report.seconds:.1f} s, "
        f"{report.images_per_second:.1f} images/s with {report.workers} workers"
    )
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()

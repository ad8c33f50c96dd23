"""`find-duplicates --move-to` and `--undo` on many files: what the checks and the manifest cost.

    python -m tests.benchmarks.bench_moves [--sizes 500 2000] [--file-kb 200] [--per-move]

Makes `size` groups of two files (random bytes, `--file-kb` each) in a temporary folder on the disk, then
moves the second file of each group to another folder on the same filesystem with `client.moves.move_duplicates`
(each file and its kept file hashed right before the move, the manifest rewritten before each batch), then
puts them back with `undo_moves`. With `--per-move` it also runs the moves rewriting the manifest before every
single move, the simple way the batches replace. Prints a table and writes bench-results/bench-moves.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import client.moves as moves
from client.report import FileCopy, FileGroup

RESULTS = Path(__file__).resolve().parents[2] / "bench-results" / "bench-moves.json"


def make_groups(folder: Path, size: int, file_bytes: int) -> list[FileGroup]:
    groups = []
    for n in range(size):
        data = os.urandom(file_bytes)
        sha = hashlib.sha256(data).hexdigest()
        kept, copy = folder / f"photo{n:06d}.jpg", folder / f"photo{n:06d}_copy.jpg"
        kept.write_bytes(data)
        copy.write_bytes(data)
        groups.append(
            FileGroup(
                n,
                [
                    FileCopy(n, kept.name, str(kept), 1.0, True, sha, file_bytes),
                    FileCopy(n, copy.name, str(copy), 0.99, False, sha, file_bytes),
                ],
            )
        )
    return groups


def measure(size: int, file_bytes: int, batch_fraction: int) -> dict[str, Any]:
    writes = 0
    real_write = moves.write_atomically

    def counting_write(path: Path, text: str) -> None:
        nonlocal writes
        writes += 1
        real_write(path, text)

    moves.BATCH_FRACTION, moves.write_atomically = batch_fraction, counting_write  # type: ignore[misc]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder, target = Path(tmp) / "photos", Path(tmp) / "dups"
            folder.mkdir()
            groups = make_groups(folder, size, file_bytes)
            started = time.perf_counter()
            report = moves.move_duplicates(groups, folder, target)
            move_s = time.perf_counter() - started
            assert report.manifest is not None and len(report.moved) == size and not report.left
            move_writes, manifest_bytes = writes, report.manifest.stat().st_size
            started = time.perf_counter()
            undone = moves.undo_moves(report.manifest)
            undo_s = time.perf_counter() - started
            assert len(undone.restored) == size
    finally:
        moves.BATCH_FRACTION, moves.write_atomically = 4, real_write  # type: ignore[misc]
    return {
        "files": size,
        "file_kb": file_bytes // 1024,
        "manifest": "per batch" if batch_fraction == 4 else "per move",
        "move_s": round(move_s, 3),
        "moves_per_s": round(size / move_s, 1),
        "manifest_writes": move_writes,
        "manifest_kb": manifest_bytes // 1024,
        "undo_s": round(undo_s, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    p.add_argument("--file-kb", type=int, default=200)
    p.add_argument("--per-move", action="store_true", help="also rewrite the manifest before every move")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    rows = []
    for size in args.sizes:
        rows.append(measure(size, args.file_kb * 1024, 4))
        if args.per_move:
            rows.append(measure(size, args.file_kb * 1024, 10**12))  # a batch of one, always
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "rows": rows}, indent=2
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

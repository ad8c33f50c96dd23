"""`find-duplicates --move-to` and `--undo`: moving all but the kept file of each group out of a folder, and back.

Nothing is lost and nothing is overwritten:

- the kept file never moves, nor a file that is the same file (a hard link, a symbolic link either way, the same
  path twice); symbolic links never move at all: they hold none of the bytes;
- each file is checked right before it moves: its size and SHA-256 must still be those ingested, and so must the
  kept file's, or it stays where it is;
- a move never replaces a file: a name taken in the target gets ' (1)', ' (2)'...; on one filesystem the file is
  hard-linked into place and then unlinked (a link refuses an existing name, where a rename would replace it);
  across filesystems it is copied into a new file, fsynced and hashed before the original is unlinked;
- every move is in a manifest (JSON, rewritten atomically) before it happens, so a run that stops half-way
  (a crash, Ctrl-C, a full disk) leaves a manifest listing every move done; `--undo` reads it and puts the
  files back, under the same checks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from client.report import FileCopy, FileGroup
from index.errors import InvalidArgument

MANIFEST_KIND = "find-duplicates moves"
MANIFEST_VERSION = 1
# Before each batch of moves the whole manifest is rewritten; a batch is a quarter of the moves done so far
# (at least one), so n moves rewrite it about 4.5 ln(n) times rather than n times: a manifest of 5000 moves
# is 1.7 MB, and rewriting it before every move would take longer than the moves (`tests/benchmarks/bench_moves.py`).
BATCH_FRACTION = 4
# errno values for which os.link cannot place a file, yet a copy may: another filesystem, or one without hard
# links (FAT, some network shares); EPERM also when hard links to others' files are protected.
NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS})

MoveStatus = Literal["moving", "moved", "restored"]
# Why a file was left where it was: it is the kept file under another name ("same file": not a failure), it or
# its kept file is not what was read ("changed"), the move failed ("failed"); for --undo also "taken" (its old
# path holds another file again) and "gone".
LeftKind = Literal["same file", "changed", "failed", "taken", "gone"]


@dataclass
class Move:
    """One file moved out of the folder. 'moving' is recorded before the move and 'moved' after it; a run
    that stopped in between leaves 'moving', and `--undo` then looks at the files to see which it was."""

    source: str  # "from": where the file was (absolute)
    target: str  # "to": where it went (absolute)
    sha256: str
    size: int
    group: int  # the group's number as printed (1 = largest)
    kept: str  # the group's kept file (absolute)
    status: MoveStatus = "moving"

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "sha256": self.sha256,
            "size": self.size,
            "group": self.group,
            "kept": self.kept,
            "status": self.status,
        }


@dataclass(frozen=True)
class LeftFile:
    """A file of a group that was not moved (or, in `--undo`, not put back), and why."""

    path: str
    group: int
    kept: str
    kind: LeftKind
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "group": self.group, "kept": self.kept, "kind": self.kind, "reason": self.reason}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Manifest:
    """The record of one `--move-to` run, at `path` (written by `save`, atomically)."""

    path: Path
    folder: str
    target: str
    started: str = field(default_factory=_now)
    finished: str | None = None
    restored: str | None = None  # when `--undo` last ran over it
    moves: list[Move] = field(default_factory=list)
    left: list[LeftFile] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": MANIFEST_KIND,
            "version": MANIFEST_VERSION,
            "folder": self.folder,
            "target": self.target,
            "started": self.started,
            "finished": self.finished,
            "restored": self.restored,
            "moves": [m.to_json() for m in self.moves],
            "left": [f.to_json() for f in self.left],
        }

    def save(self) -> None:
        """Write the manifest atomically: a temporary file beside it, fsync, rename over it, fsync the folder.

        Raises:
            OSError: it could not be written (the previous version, if any, is unchanged).
        """
        write_atomically(self.path, json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """The manifest at `path`.

        Raises:
            InvalidArgument: no such file, or not a manifest of `find-duplicates --move-to`.
        """
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidArgument(f"no such manifest: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"{path} is not a manifest of find-duplicates --move-to: {exc}") from None
        if not isinstance(raw, dict) or raw.get("kind") != MANIFEST_KIND:
            raise InvalidArgument(f"{path} is not a manifest of find-duplicates --move-to")
        if raw.get("version") != MANIFEST_VERSION:
            raise InvalidArgument(f"{path} is a version {raw.get('version')} manifest; this version reads 1")
        try:
            return cls(
                path=path,
                folder=str(raw["folder"]),
                target=str(raw["target"]),
                started=str(raw["started"]),
                finished=raw.get("finished"),
                restored=raw.get("restored"),
                moves=[
                    Move(
                        str(m["from"]),
                        str(m["to"]),
                        str(m["sha256"]),
                        int(m["size"]),
                        int(m["group"]),
                        str(m["kept"]),
                        m["status"] if m["status"] in ("moving", "moved", "restored") else "moving",
                    )
                    for m in raw["moves"]
                ],
                left=[
                    LeftFile(str(f["path"]), int(f["group"]), str(f["kept"]), f["kind"], str(f["reason"]))
                    for f in raw["left"]
                ],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"{path} is a damaged manifest ({exc!r} missing or wrong)") from None


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` by `text` so that a reader (or a crash) sees the old content or the new, never a part.

    Raises:
        OSError: nothing was replaced.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make the names created or removed in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the data itself was fsynced
    finally:
        os.close(fd)


def free_name(folder: Path, name: str, taken: Collection[str] = ()) -> Path:
    """`folder / name`, or with ' (1)', ' (2)'... before the suffix when that exists (or is in `taken`, names
    promised to other files): nothing is overwritten."""
    target = folder / name
    stem, suffix, n = Path(name).stem, Path(name).suffix, 1
    while os.path.lexists(target) or target.name in taken:
        target = folder / f"{stem} ({n}){suffix}"
        n += 1
    return target


def file_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def why_not_as_read(path: Path, sha256: str, size: int, *, follow_symlinks: bool = False) -> str | None:
    """Why the file at `path` is no longer the one read (gone, not a regular file, other size or bytes); None
    when its size and SHA-256 are still `size` and `sha256`."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        return "it is gone"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "it is no longer a regular file"
    if st.st_size != size:
        return f"it changed since it was read ({st.st_size} bytes, {size} then)"
    try:
        if file_sha256(path) != sha256:
            return "it changed since it was read (other bytes, same size)"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    return None


def move_file(source: Path, target: Path, sha256: str) -> None:
    """Move `source` to `target`, a name that must not exist: nothing is ever replaced.

    On one filesystem `target` becomes a hard link of `source`, which is then unlinked. Across filesystems, or
    where hard links are not allowed, `source` is copied into a new file (mode and times kept), fsynced, and
    its SHA-256 checked against `sha256` before `source` is unlinked. When anything fails `source` is left
    as it was and nothing is left at `target`.

    Raises:
        FileExistsError: `target` exists.
        OSError: the move failed.
    """
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in NO_LINK:
            raise
        _copy_then_unlink(source, target, sha256)
        return
    try:
        os.unlink(source)
    except BaseException:
        os.unlink(target)  # the same inode: removing this name loses nothing
        raise
    fsync_folder(target.parent)
    fsync_folder(source.parent)


def _copy_then_unlink(source: Path, target: Path, sha256: str) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # O_EXCL: never an existing file
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        with contextlib.suppress(OSError):  # a filesystem without modes or times still keeps the bytes
            os.utime(target, ns=(os.stat(source).st_atime_ns, os.stat(source).st_mtime_ns))
            os.chmod(target, stat.S_IMODE(os.stat(source).st_mode))
        if file_sha256(target) != sha256:
            raise OSError(errno.EIO, f"the copy at {target} differs from {source}")
        fsync_folder(target.parent)
        os.unlink(source)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
    fsync_folder(source.parent)


def absolute(path: str | Path) -> str:
    """The path made absolute as written (symbolic links not resolved)."""
    return os.path.abspath(path)


def same_file_reason(copy: FileCopy, kept: FileCopy) -> str | None:
    """Why `copy` must not move on account of the kept file: it is a symbolic link, the kept file itself (the
    same path, a hard link) or what the kept file links to; None when it is a file of its own."""
    path, kept_path = Path(copy.path), Path(kept.path)
    try:
        if path.is_symlink():
            return f"it is a symbolic link (to {os.readlink(path)}), not a copy"
        if path.resolve() == kept_path.resolve():
            return f"it is the kept file {kept.path}"
        st, kept_st = path.stat(), kept_path.stat()
    except OSError:
        return None  # gone or unreadable: the check before the move reports it
    if (st.st_dev, st.st_ino) == (kept_st.st_dev, kept_st.st_ino):
        return f"it is a hard link of the kept file {kept.path}"
    return None


@dataclass(frozen=True)
class MoveReport:
    """What `move_duplicates` did: the manifest it wrote (None when there was nothing to move), the moves done,
    the files left where they were, and the error that stopped it early, if any."""

    manifest: Path | None
    moved: list[Move]
    left: list[LeftFile]
    stopped: str | None = None
    interrupted: bool = False  # Ctrl-C stopped it (the manifest lists every move done before)


@dataclass(frozen=True)
class _Candidate:
    copy: FileCopy
    kept: FileCopy
    group: int


def move_duplicates(
    groups: Sequence[FileGroup],
    folder: Path,
    target: Path,
    *,
    on_move: Callable[[Move], None] | None = None,
    on_left: Callable[[LeftFile], None] | None = None,
) -> MoveReport:
    """Move every file but the kept one of each group from `folder` into `target` (see the module docstring).

    `on_move` and `on_left` hear of each file as it is moved or left. A move that fails is reported (left)
    and the others go on; a manifest that cannot be written stops the run before the next move, and so does
    Ctrl-C (between two files, or inside a copy, which is then removed).

    Raises:
        OSError: `target` or the manifest could not be created (nothing was moved).
    """
    plan: list[_Candidate] = []
    leaving: list[LeftFile] = []
    for number, group in enumerate(groups, start=1):
        kept = group.files[0]
        for copy in group.files[1:]:
            why = same_file_reason(copy, kept)
            if why is None:
                plan.append(_Candidate(copy, kept, number))
            else:
                leaving.append(LeftFile(absolute(copy.path), number, absolute(kept.path), "same file", why))
    if not plan and not leaving:
        return MoveReport(None, [], [])
    target.mkdir(parents=True, exist_ok=True)
    manifest = _claim_manifest(target, folder)
    left: list[LeftFile] = []

    def leave(item: LeftFile) -> None:
        left.append(item)
        manifest.left.append(item)
        if on_left:
            on_left(item)

    for item in leaving:
        leave(item)
    try:
        manifest.save()
    except BaseException:
        with contextlib.suppress(OSError):
            manifest.path.unlink()  # the name claimed for it, still empty
        raise
    run = _MoveRun(manifest, target, leave, on_move)
    try:
        run.move_all(plan)
    except OSError as exc:  # the manifest could not be written: never move what it does not list
        why = f"cannot write the manifest {manifest.path}: {exc.strerror or exc}"
        return MoveReport(manifest.path, run.moved, left, why)
    except KeyboardInterrupt:
        return MoveReport(manifest.path, run.moved, left, "interrupted", interrupted=True)
    finally:
        run.settle()
    return MoveReport(manifest.path, run.moved, left)


def _claim_manifest(target: Path, folder: Path) -> Manifest:
    """A new manifest in `target` under a name no other file has (claimed with O_EXCL, then written whole)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    while True:
        path = free_name(target, f"find-duplicates-{stamp}.json")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            continue
        return Manifest(path, absolute(folder), absolute(target))


class _MoveRun:
    """The moves of one run, recorded in `manifest` before each batch happens."""

    def __init__(
        self,
        manifest: Manifest,
        target: Path,
        leave: Callable[[LeftFile], None],
        on_move: Callable[[Move], None] | None,
    ) -> None:
        self.manifest = manifest
        self.target = target
        self.leave = leave
        self.on_move = on_move
        self.moved: list[Move] = []
        # group -> the kept file's stat when it was last hashed, and why it was not as read (None: it was)
        self._kept: dict[int, tuple[tuple[int, ...] | None, str | None]] = {}

    def move_all(self, plan: Sequence[_Candidate]) -> None:
        start = 0
        while start < len(plan):
            batch = plan[start : start + 1 + len(self.moved) // BATCH_FRACTION]
            start += len(batch)
            taken: set[str] = set()
            entries = []
            for c in batch:
                to = free_name(self.target, Path(c.copy.path).name, taken)
                taken.add(to.name)
                entries.append(
                    Move(absolute(c.copy.path), str(to), c.copy.sha256, c.copy.size, c.group, absolute(c.kept.path))
                )
            self.manifest.moves.extend(entries)
            self.manifest.save()
            for c, entry in zip(batch, entries, strict=True):
                self._move_one(c, entry)
        self.manifest.finished = _now()

    def _kept_why(self, c: _Candidate) -> str | None:
        """Why the group's kept file is not as read; hashed once per group, and again when its stat changes."""
        now = _stat_key(Path(c.kept.path))
        seen = self._kept.get(c.group)
        if seen is None or seen[0] != now or now is None:
            why = why_not_as_read(Path(c.kept.path), c.kept.sha256, c.kept.size, follow_symlinks=True)
            seen = self._kept[c.group] = (now, why)
        return seen[1]

    def _move_one(self, c: _Candidate, entry: Move) -> None:
        kept_why = self._kept_why(c)
        if kept_why is not None:
            return self._leave(entry, "changed", f"its kept file {c.kept.path} is not as read: {kept_why}")
        why = why_not_as_read(Path(c.copy.path), c.copy.sha256, c.copy.size)
        if why is not None:
            return self._leave(entry, "changed", why)
        while True:
            try:
                move_file(Path(entry.source), Path(entry.target), entry.sha256)
            except FileExistsError:
                # Taken since it was chosen (by another program): a new name, recorded before the move.
                entry.target = str(free_name(self.target, Path(entry.source).name))
                self.manifest.save()
                continue
            except OSError as exc:
                return self._leave(entry, "failed", f"it could not be moved to {entry.target}: {exc.strerror or exc}")
            break
        entry.status = "moved"
        self.moved.append(entry)
        if self.on_move:
            self.on_move(entry)
        return None

    def _leave(self, entry: Move, kind: LeftKind, reason: str) -> None:
        self.manifest.moves.remove(entry)
        self.leave(LeftFile(entry.source, entry.group, entry.kept, kind, reason))

    def settle(self) -> None:
        """After the run, whole or stopped: entries recorded but not confirmed are settled from the files
        (moved when only the target exists; dropped when the source is still there, since a move that stops
        removes what it placed), and the manifest is saved."""
        for entry in list(self.manifest.moves):
            if entry.status != "moving":
                continue
            at_source, at_target = os.path.lexists(entry.source), os.path.lexists(entry.target)
            if at_target and not at_source:
                entry.status = "moved"
                self.moved.append(entry)
            elif at_source and not (at_target and _same_file(entry.source, entry.target)):
                self.manifest.moves.remove(entry)
        with contextlib.suppress(OSError):  # already reported when it is the manifest that failed
            self.manifest.save()


@dataclass(frozen=True)
class UndoReport:
    """What `undo_moves` did: files put back, files already back, and files left where they were."""

    manifest: Manifest
    restored: list[Move]
    already: int
    left: list[LeftFile]
    saved: str | None = None  # why the manifest could not be updated, if it could not


def undo_moves(path: Path, *, on_restore: Callable[[Move], None] | None = None) -> UndoReport:
    """Put the files a manifest lists back where they were, the last moved first.

    Each one must still have its size and SHA-256; a file whose old path is taken again stays where it is
    (nothing is overwritten). The manifest is updated: the files put back are marked 'restored'.

    Raises:
        InvalidArgument: `path` is not a readable manifest.
    """
    manifest = Manifest.load(path)
    restored: list[Move] = []
    left: list[LeftFile] = []
    already = 0
    for entry in reversed(manifest.moves):
        if entry.status == "restored":
            already += 1
            continue
        outcome = _undo_one(entry)
        if outcome is None:
            entry.status = "restored"
            restored.append(entry)
            if on_restore:
                on_restore(entry)
        elif outcome == "":
            entry.status = "restored"
            already += 1
        else:
            left.append(LeftFile(entry.target, entry.group, entry.kept, *outcome))
    manifest.restored = _now()
    saved = None
    try:
        manifest.save()
    except OSError as exc:
        saved = f"cannot update the manifest {path}: {exc.strerror or exc}"
    return UndoReport(manifest, restored, already, left, saved)


def _undo_one(entry: Move) -> tuple[LeftKind, str] | Literal[""] | None:
    """Put one file back; None when done, '' when it was already back, else (kind, why it stays)."""
    source, target = Path(entry.source), Path(entry.target)
    taken: tuple[LeftKind, str] = ("taken", f"{entry.source} is taken again; the file stays at {entry.target}")
    if not os.path.lexists(target):
        if why_not_as_read(source, entry.sha256, entry.size) is None:
            return ""  # never moved (a run stopped before it), or put back by an undo that stopped
        return ("gone", f"it is gone from {entry.target}")
    if os.path.lexists(source):
        with contextlib.suppress(OSError):
            if os.path.samefile(source, target) and why_not_as_read(source, entry.sha256, entry.size) is None:
                os.unlink(target)  # a move stopped between linking and unlinking: both names are one file
                return None
        return taken
    why = why_not_as_read(target, entry.sha256, entry.size)
    if why is not None:
        return ("changed", why.replace("since it was read", "since it was moved") + f"; it stays at {entry.target}")
    try:
        source.parent.mkdir(parents=True, exist_ok=True)
        move_file(target, source, entry.sha256)
    except FileExistsError:
        return taken
    except OSError as exc:
        return ("failed", f"it could not be put back at {entry.source}: {exc.strerror or exc}")
    return None


def target_inside(folder: Path, target: Path) -> bool:
    """Whether `target` is `folder` or anywhere inside it (symbolic links resolved, `target` need not exist)."""
    f, t = folder.resolve(), target.resolve()
    return t == f or f in t.parents


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _stat_key(path: Path) -> tuple[int, ...] | None:
    """What changes when a file is replaced or written to; None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

"""`find-duplicates --move-to` and `--undo` lose nothing: links and the kept file stay, a target inside the folder
is refused, files changed since they were read stay, failures are reported, every move is in the manifest (also
after a crash), and `--undo` puts the files back without overwriting anything."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from client.duplicates import build_parser, find_duplicates, main, move_found
from client.moves import Move, move_duplicates
from tests.client.test_cli import assert_one_line_error, run
from tests.conftest import IMAGES_DIR, REPO_ROOT, duplicates_folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three edited copies of the astronaut (the original is kept), a byte copy of the coffee in a subfolder,
    and a photo with no copy."""
    return duplicates_folder(tmp_path / "photos")


def _args(folder: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["--images_folder", str(folder), "--data_dir", str(tmp_path / "data"), "--quiet", *extra]


def contents(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> SHA-256), manifests left out."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("find-duplicates-")
    }


def manifest_of(target: Path) -> dict[str, Any]:
    (path,) = target.glob("find-duplicates-*.json")
    manifest: dict[str, Any] = json.loads(path.read_text())
    manifest["path"] = str(path)
    return manifest


def moved_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("moved ")]


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` made read-only: no name can be added or removed in it, not even by root (the immutable flag)."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("root ignores folder permissions and chattr is not installed")
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"this filesystem has no immutable flag: {made.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


def test_a_move_is_printed_recorded_in_the_manifest_and_never_overwrites(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "moved"
    target.mkdir()
    (target / "astronaut_small.jpg").write_bytes(b"already here")
    before = contents(folder)
    code, out, err = run(capsys, main, *_args(folder, tmp_path, "--move-to", str(target)))
    assert code == 0, err
    assert sorted(moved_lines(out)) == [
        f"moved {folder / 'astronaut_mirror.jpg'} -> {target / 'astronaut_mirror.jpg'}",
        f"moved {folder / 'astronaut_small.jpg'} -> {target / 'astronaut_small (1).jpg'}",
    ]
    assert (target / "astronaut_small.jpg").read_bytes() == b"already here"
    manifest = manifest_of(target)
    assert f"manifest {manifest['path']} (find-duplicates --undo {manifest['path']} puts them back)" in out
    assert (manifest["folder"], manifest["target"]) == (str(folder), str(target))
    assert manifest["started"] <= manifest["finished"] and manifest["left"] == []
    assert [m["status"] for m in manifest["moves"]] == ["moved", "moved"]
    for m in manifest["moves"]:
        assert set(m) == {"from", "to", "sha256", "size", "group", "kept", "status"}
        assert (m["group"], m["kept"]) == (1, str(folder / "astronaut.jpg"))
        assert hashlib.sha256(Path(m["to"]).read_bytes()).hexdigest() == m["sha256"] == before[Path(m["from"]).name]
        assert Path(m["to"]).stat().st_size == m["size"]
    assert sorted(contents(folder)) == ["astronaut.jpg", "coffee.jpg", "rocket.jpg", "sub/coffee.jpg"]


def test_the_kept_file_and_links_to_it_never_move(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(IMAGES_DIR / "cat.png", photos / "cat.png")
    Image.open(IMAGES_DIR / "cat.png").convert("RGB").save(photos / "cat_q60.jpg", quality=60)  # a real copy
    (photos / "a_link.png").symlink_to("cat.png")  # sorts first: still not the one kept, and never moved
    os.link(photos / "cat.png", photos / "hard.png")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(IMAGES_DIR / "coffee.jpg", outside / "coffee.jpg")
    # A symbolic link sorting before a hard link of its target: taken as the kept file, it would link to the other.
    (photos / "coffee.jpg").symlink_to(outside / "coffee.jpg")
    os.link(outside / "coffee.jpg", photos / "coffee_hard.jpg")
    target = tmp_path / "moved"
    code, out, err = run(capsys, main, *_args(photos, tmp_path, "--move-to", str(target), "--json"))
    assert code == 0, err
    groups = {g["images"][0]["filename"]: [i["filename"] for i in g["images"]] for g in json.loads(out)["groups"]}
    assert sorted(groups) == ["cat.png", "coffee_hard.jpg"]  # the kept file is a file of its own, not a link
    assert sorted(groups["cat.png"]) == ["a_link.png", "cat.png", "cat_q60.jpg", "hard.png"]
    assert moved_lines(err) == [f"moved {photos / 'cat_q60.jpg'} -> {target / 'cat_q60.jpg'}"]
    assert f"left {photos / 'a_link.png'}: it is a symbolic link (to cat.png), not a copy" in err
    assert f"left {photos / 'hard.png'}: it is a hard link of the kept file {photos / 'cat.png'}" in err
    assert f"left {photos / 'coffee.jpg'}: it is a symbolic link" in err
    assert sorted(p.name for p in photos.iterdir()) == [
        "a_link.png",
        "cat.png",
        "coffee.jpg",
        "coffee_hard.jpg",
        "hard.png",
    ]
    assert (photos / "a_link.png").resolve() == (photos / "cat.png").resolve()
    assert (outside / "coffee.jpg").read_bytes() == (IMAGES_DIR / "coffee.jpg").read_bytes()
    left = manifest_of(target)["left"]
    assert sorted(f["path"] for f in left) == [str(photos / n) for n in ("a_link.png", "coffee.jpg", "hard.png")]
    assert {f["kind"] for f in left} == {"same file"}


@pytest.mark.parametrize(
    ("inside", "extra"),
    [("photos-dups", []), ("sub/dups", ["--recursive"]), ("", []), ("sub", [])],
    ids=["directly-in", "in-a-subfolder", "the-folder", "an-existing-subfolder"],
)
def test_a_target_inside_the_scanned_folder_is_refused_before_anything_is_done(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path, inside: str, extra: list[str]
) -> None:
    before = contents(folder)
    target = folder / inside if inside else folder
    result = run(capsys, main, *_args(folder, tmp_path, "--move-to", str(target), *extra))
    assert_one_line_error(*result, "is inside the scanned folder", "choose a folder outside it")
    assert contents(folder) == before and not (tmp_path / "data").exists()
    # Through a symbolic link to the folder, too.
    (tmp_path / "via").symlink_to(folder)
    result = run(capsys, main, *_args(folder, tmp_path, "--move-to", str(tmp_path / "via" / "dups"), *extra))
    assert_one_line_error(*result, "is inside the scanned folder")


def test_a_file_changed_between_grouping_and_moving_stays_and_is_reported(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "moved"
    args = build_parser().parse_args(_args(folder, tmp_path, "--recursive", "--move-to", str(target)))
    _, groups = find_duplicates(args)
    assert [len(g.files) for g in groups] == [3, 2]
    small = folder / "astronaut_small.jpg"
    data = bytearray(small.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    small.write_bytes(bytes(data))
    with (folder / "coffee.jpg").open("ab") as fh:  # the kept file of the coffee group
        fh.write(b"edited")
    capsys.readouterr()
    code = move_found(groups, folder, target, sys.stdout)
    out, err = capsys.readouterr()
    assert code == 1
    assert moved_lines(out) == [f"moved {folder / 'astronaut_mirror.jpg'} -> {target / 'astronaut_mirror.jpg'}"]
    assert f"left {small}: it changed since it was read (other bytes, same size)" in err
    assert f"left {folder / 'sub' / 'coffee.jpg'}: its kept file {folder / 'coffee.jpg'} is not as read" in err
    assert err.strip().splitlines()[-1] == "error: 2 files were left in place (listed above and in the manifest)"
    assert small.read_bytes() == bytes(data) and (folder / "sub" / "coffee.jpg").exists()
    manifest = manifest_of(target)
    assert [m["from"] for m in manifest["moves"]] == [str(folder / "astronaut_mirror.jpg")]
    assert sorted((f["path"], f["kind"]) for f in manifest["left"]) == [
        (str(small), "changed"),
        (str(folder / "sub" / "coffee.jpg"), "changed"),
    ]


def test_a_file_removed_before_the_move_is_reported_and_the_others_move(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "moved"
    args = build_parser().parse_args(_args(folder, tmp_path, "--move-to", str(target)))
    _, groups = find_duplicates(args)
    (folder / "astronaut_mirror.jpg").unlink()
    capsys.readouterr()
    code = move_found(groups, folder, target, sys.stdout)
    out, err = capsys.readouterr()
    assert code == 1
    assert moved_lines(out) == [f"moved {folder / 'astronaut_small.jpg'} -> {target / 'astronaut_small.jpg'}"]
    assert f"left {folder / 'astronaut_mirror.jpg'}: it is gone" in err
    assert [f["kind"] for f in manifest_of(target)["left"]] == ["changed"]


def test_a_failing_move_is_reported_and_the_manifest_lists_the_moves_done(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "moved"
    before = contents(folder)
    with read_only(folder / "sub"):  # sub/coffee.jpg, the last file to move, cannot leave its folder
        code, out, err = run(capsys, main, *_args(folder, tmp_path, "--recursive", "--move-to", str(target)))
    assert code == 1
    assert len(moved_lines(out)) == 2
    assert f"left {folder / 'sub' / 'coffee.jpg'}: it could not be moved to {target / 'coffee.jpg'}: " in err
    assert err.strip().splitlines()[-1].startswith("error: 1 file was left in place")
    manifest = manifest_of(target)
    assert sorted(Path(m["from"]).name for m in manifest["moves"]) == ["astronaut_mirror.jpg", "astronaut_small.jpg"]
    assert all(m["status"] == "moved" and Path(m["to"]).is_file() for m in manifest["moves"])
    assert [(f["path"], f["kind"]) for f in manifest["left"]] == [(str(folder / "sub" / "coffee.jpg"), "failed")]
    assert sorted(p.name for p in target.iterdir() if p.suffix == ".jpg") == [
        "astronaut_mirror.jpg",
        "astronaut_small.jpg",
    ]  # nothing half-moved
    code, out, err = run(capsys, main, "--undo", manifest["path"])
    assert code == 0, err
    assert contents(folder) == before


def test_a_target_that_cannot_be_written_moves_nothing(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "moved"
    target.mkdir()
    before = contents(folder)
    with read_only(target):
        result = run(capsys, main, *_args(folder, tmp_path, "--move-to", str(target)))
    code, out, err = result
    assert code == 1 and moved_lines(out) == []
    assert err.strip().splitlines()[-1].startswith(f"error: nothing moved: cannot write in {target}")
    assert contents(folder) == before and list(target.iterdir()) == []


# Run as a process that dies right after its first move, with no chance to clean up or write anything more.
DIE_AFTER_FIRST_MOVE = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from client.duplicates import build_parser, find_duplicates
    from client.moves import move_duplicates
    args = build_parser().parse_args(sys.argv[1:])
    _, groups = find_duplicates(args)
    move_duplicates(groups, Path(args.images_folder), Path(args.move_to), on_move=lambda move: os._exit(3))
    """
)


@pytest.mark.slow
def test_a_run_killed_mid_way_leaves_a_manifest_listing_the_move_done_and_undo_finishes(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "moved"
    before = contents(folder)
    died = subprocess.run(
        [sys.executable, "-c", DIE_AFTER_FIRST_MOVE, *_args(folder, tmp_path, "--move-to", str(target))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert died.returncode == 3, died.stderr
    manifest = manifest_of(target)
    assert manifest["finished"] is None
    (move,) = manifest["moves"]  # recorded before it happened: the one move done, nothing else
    assert move["status"] == "moving" and Path(move["to"]).is_file() and not Path(move["from"]).exists()
    code, out, err = run(capsys, main, "--undo", manifest["path"])
    assert code == 0, err
    assert out.splitlines() == [
        f"restored {move['to']} -> {move['from']}",
        f"1 restored, 0 already back, 0 left; manifest {manifest['path']} updated",
    ]
    assert contents(folder) == before


def test_ctrl_c_after_a_move_stops_the_run_with_a_manifest_listing_it(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "moved"
    args = build_parser().parse_args(_args(folder, tmp_path, "--move-to", str(target)))
    _, groups = find_duplicates(args)

    def interrupt(move: Move) -> None:
        raise KeyboardInterrupt

    report = move_duplicates(groups, folder, target, on_move=interrupt)
    first, second = (Path(f.path).name for f in groups[0].files[1:])
    assert report.interrupted and [Path(m.source).name for m in report.moved] == [first]
    manifest = manifest_of(target)
    assert manifest["finished"] is None
    assert [(Path(m["from"]).name, m["status"]) for m in manifest["moves"]] == [(first, "moved")]
    assert (target / first).exists() and (folder / second).exists() and not (target / second).exists()


def test_undo_puts_files_back_but_never_over_a_path_taken_again_nor_a_changed_file(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "moved"
    before = contents(folder)
    code, _, err = run(capsys, main, *_args(folder, tmp_path, "--recursive", "--move-to", str(target)))
    assert code == 0, err
    path = manifest_of(target)["path"]
    assert len(manifest_of(target)["moves"]) == 3
    (folder / "astronaut_mirror.jpg").write_bytes(b"a new file under the old name")
    small = target / "astronaut_small.jpg"
    small_bytes = small.read_bytes()
    small.write_bytes(small_bytes + b"edited")

    code, out, err = run(capsys, main, "--undo", path)
    assert code == 1
    assert out.splitlines() == [
        f"restored {target / 'coffee.jpg'} -> {folder / 'sub' / 'coffee.jpg'}",
        f"1 restored, 0 already back, 2 left; manifest {path} updated",
    ]
    assert f"left {target / 'astronaut_mirror.jpg'}: {folder / 'astronaut_mirror.jpg'} is taken again" in err
    assert f"left {small}: it changed since it was moved" in err
    assert (folder / "astronaut_mirror.jpg").read_bytes() == b"a new file under the old name"  # not overwritten
    assert (target / "astronaut_mirror.jpg").is_file() and small.is_file()

    (folder / "astronaut_mirror.jpg").unlink()
    small.write_bytes(small_bytes)
    code, out, err = run(capsys, main, "--undo", path)
    assert code == 0, err
    assert out.splitlines()[-1] == f"2 restored, 1 already back, 0 left; manifest {path} updated"
    assert contents(folder) == before and sorted(target.iterdir()) == [Path(path)]
    assert {m["status"] for m in manifest_of(target)["moves"]} == {"restored"}
    code, out, _ = run(capsys, main, "--undo", path)
    assert code == 0 and out.splitlines()[-1].startswith("0 restored, 3 already back, 0 left")


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder on another filesystem than `tmp_path` (the RAM disk /dev/shm), removed afterwards."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no writable /dev/shm on another filesystem")
    folder = shm / f"imgsim-test-{uuid.uuid4().hex[:12]}"
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_moves_to_another_filesystem_are_copied_checked_and_undone(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path, other_filesystem: Path
) -> None:
    before = contents(folder)
    mtime = (folder / "astronaut_small.jpg").stat().st_mtime_ns
    code, out, err = run(capsys, main, *_args(folder, tmp_path, "--move-to", str(other_filesystem)))
    assert code == 0, err
    assert len(moved_lines(out)) == 2
    assert not (folder / "astronaut_small.jpg").exists()
    assert (other_filesystem / "astronaut_small.jpg").stat().st_mtime_ns == mtime
    for m in manifest_of(other_filesystem)["moves"]:
        assert hashlib.sha256(Path(m["to"]).read_bytes()).hexdigest() == m["sha256"]
    code, _, err = run(capsys, main, "--undo", manifest_of(other_filesystem)["path"])
    assert code == 0, err
    assert contents(folder) == before


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "no such manifest"), ("{not json", "is not a manifest"), ('{"kind": "other"}', "is not a manifest")],
)
def test_undo_of_something_that_is_not_a_manifest_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, fragment: str
) -> None:
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_text(content)
    assert_one_line_error(*run(capsys, main, "--undo", str(path)), fragment)


def test_undo_and_move_to_together_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run(capsys, main, "--undo", str(tmp_path / "m.json"), "--move-to", str(tmp_path / "d"))
    assert_one_line_error(*result, "--move-to or --undo, not both")

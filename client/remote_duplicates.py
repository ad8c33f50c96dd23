"""`find-duplicates` through a running imgsim API: the folder's files the server does not have go to
`POST /ingest` (in requests within its limits), then `POST /duplicates/among` groups the folder's images only.
Moving files stays local (`client.moves`): only the grouping comes from the API."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from client.local import PROGRESS_MIN_IMAGES
from client.remote import ApiError, _call, _detail, _send, chunk_files, ingest_chunk
from index.duplicates import Criterion, DuplicateGroup, DuplicateSpace, group_is_copies
from index.duplicates.verification import Evidence
from index.model.registry import resolve_embedding

PAGE = 1000  # groups per POST /duplicates/among (its largest limit)


@dataclass(frozen=True)
class FoundMember:
    """A stored image of a group, as the library or the API reports it."""

    id: int
    similarity: float  # to the kept image (1.0 for itself)
    byte_size: int
    evidence: Evidence | None  # what the pixels say about it and the kept image (None: not checked)


@dataclass(frozen=True)
class FoundGroup:
    """A group of stored images, the kept one first, in either mode."""

    keep: int
    level: str | None
    copies: bool  # every member is a proven copy of the kept image
    members: list[FoundMember]

    @classmethod
    def of(cls, group: DuplicateGroup) -> FoundGroup:
        members = [FoundMember(m.image.id, m.similarity, m.image.byte_size, m.evidence) for m in group.members]
        return cls(group.keep, group.level, group_is_copies(group), members)

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> FoundGroup:
        members = [
            FoundMember(
                int(i["id"]),
                float(i["similarity"]),
                int(i["byte_size"]),
                Evidence.from_dict(i["evidence"]) if i.get("evidence") else None,
            )
            for i in raw["images"]
        ]
        return cls(int(raw["keep"]), raw["level"], bool(raw["copies"]), members)


@dataclass(frozen=True)
class StoredFile:
    """A file of the folder and the stored image it is."""

    id: int
    sha256: str


@dataclass(frozen=True)
class FolderGroups:
    criterion: Criterion
    stored: dict[Path, StoredFile]  # the folder's files that are stored, in the folder's order
    groups: list[FoundGroup]
    skipped: list[tuple[str, str]]  # (file name, why it could not be stored)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stored_id(http: httpx.Client, sha256: str) -> int | None:
    """The id of the stored image with these bytes (outside the trash), or None.

    Raises:
        ApiError: the API is unreachable, refused the key, or failed.
    """
    response = _send(http, "GET", "/images/lookup", params={"ref": sha256})
    if response.status_code == 404:
        return None
    if response.is_error:
        raise ApiError(f"GET /images/lookup failed with HTTP {response.status_code}: {_detail(response)}")
    return int(response.json()["id"])


def group_folder_remote(
    api_url: str,
    files: Sequence[Path],
    level: str | None,
    threshold: float | None,
    *,
    check: Callable[[Criterion], None] = lambda _: None,
    api_key: str | None = None,
    show_progress: bool = False,
    timeout: float = 600.0,
) -> FolderGroups:
    """Store the `files` the API at `api_url` does not have, then its groups of duplicates among them.

    `check` sees the criterion before anything is uploaded (and may raise to stop).

    Raises:
        InvalidArgument: a bad level or threshold (for the server's embedding), or `check`'s refusal.
        ApiError: the API is unreachable, refused the key, or failed.
    """
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout, headers=headers) as http:
        stats = _call(http, "GET", "/stats").json()
        # The same levels and floor as the server's (its embedding's), so bad input fails before any upload.
        space = DuplicateSpace.of(resolve_embedding(str(stats["embedding"])), int(stats["dim"]))
        criterion = space.resolve(level, threshold)
        check(criterion)
        limits = stats["limits"]
        shown = show_progress and len(files) >= PROGRESS_MIN_IMAGES
        with tqdm(total=len(files), unit="img", disable=not shown) as bar:
            hashes = {path: _sha256(path) for path in files}
            known: dict[str, int | None] = {}
            for path in files:
                if hashes[path] not in known:
                    known[hashes[path]] = _stored_id(http, hashes[path])
                if known[hashes[path]] is not None:
                    bar.update(1)
            new = [path for path in files if known[hashes[path]] is None]
            outcomes: dict[Path, dict[str, Any] | str] = {}
            for chunk, too_big in chunk_files(new, limits["max_files_per_request"], limits["max_upload_bytes"]):
                outcomes.update(ingest_chunk(http, chunk))
                outcomes.update(too_big)
                bar.update(len(chunk) + len(too_big))
        stored: dict[Path, StoredFile] = {}
        skipped: list[tuple[str, str]] = []
        for path in files:
            outcome = outcomes.get(path)
            image_id = known[hashes[path]] if outcome is None else None
            if isinstance(outcome, dict):
                image_id = int(outcome["id"])
            if image_id is not None:
                stored[path] = StoredFile(image_id, hashes[path])
            else:
                skipped.append((path.name, str(outcome)))
        groups = _groups_among(http, sorted({s.id for s in stored.values()}), criterion)
    return FolderGroups(criterion, stored, groups, skipped)


def _groups_among(http: httpx.Client, ids: list[int], criterion: Criterion) -> list[FoundGroup]:
    if not ids:
        return []
    asked: dict[str, Any] = {"level": criterion.level} if criterion.level else {"threshold": criterion.threshold}
    groups: list[FoundGroup] = []
    while True:
        body = {"ids": ids, **asked, "offset": len(groups), "limit": PAGE}
        page = _call(http, "POST", "/duplicates/among", json=body).json()
        groups += [FoundGroup.from_api(g) for g in page["groups"]]
        if not page["groups"] or len(groups) >= int(page["total"]):
            return groups

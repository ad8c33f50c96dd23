"""The stored library as the `imgsim` command sees it: through the index in the data directory (`LocalLibrary`),
or through a running API (`ApiLibrary`). Both answer the same client-side values, so every subcommand prints
the same in either mode."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from client.remote import ApiError, _detail, _predictions, _send
from client.report import RankedImage, RankReport
from index.config import Settings
from index.errors import AmbiguousReference, InvalidArgument, UnknownReference
from index.model.registry import Prediction
from index.search import SearchHit
from index.service import ImageIndex
from index.storage.store import ImageInfo


@dataclass(frozen=True)
class LibraryImage:
    """A stored image, as listed, removed or pruned."""

    id: int
    filename: str
    names: list[str]
    sha256: str
    byte_size: int
    width: int
    height: int
    format: str
    predictions: list[Prediction]
    created_at: str  # ISO 8601, UTC
    paths: list[str] = field(default_factory=list)  # filled in where a prune names the files that are gone

    @classmethod
    def of(cls, info: ImageInfo, with_paths: bool = False) -> LibraryImage:
        return cls(
            id=info.id,
            filename=info.filename,
            names=info.names,
            sha256=info.sha256,
            byte_size=info.byte_size,
            width=info.width,
            height=info.height,
            format=info.format,
            predictions=info.predictions,
            created_at=info.created_at.isoformat().replace("+00:00", "Z"),
            paths=info.paths if with_paths else [],
        )

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> LibraryImage:
        return cls(
            id=int(item["id"]),
            filename=str(item["filename"]),
            names=[str(n) for n in item["names"]],
            sha256=str(item["sha256"]),
            byte_size=int(item["byte_size"]),
            width=int(item["width"]),
            height=int(item["height"]),
            format=str(item["format"]),
            predictions=_predictions(item["predictions"]),
            created_at=str(item["created_at"]).replace("+00:00", "Z"),
            paths=[str(p) for p in item.get("paths", [])],
        )


@dataclass(frozen=True)
class LibraryStats:
    count: int
    trashed: int
    model: str
    embedding: str
    dim: int
    index_type: str
    engine: str
    trash_retention_days: int


class Library(Protocol):
    """What the subcommands ask of the library, in either mode."""

    def search_file(self, file: Path, k: int, metric: str, label: str | None) -> RankReport: ...
    def search_ref(self, ref: str, k: int, metric: str, label: str | None) -> RankReport: ...
    def list_images(self, offset: int, limit: int) -> tuple[int, list[LibraryImage]]: ...
    def remove(self, ref: str) -> LibraryImage: ...
    def restore(self, image_id: int) -> LibraryImage: ...
    def prune(self, dry_run: bool) -> list[LibraryImage]: ...
    def stats(self) -> LibraryStats: ...
    def close(self) -> None: ...


def _report(reference: str, reference_path: str, metric: str, rows: list[RankedImage]) -> RankReport:
    return RankReport(
        reference=reference,
        reference_path=reference_path,
        metric=metric,
        rows=rows,
        added=0,
        existing=0,
        skipped=[],
        seconds=0.0,
    )


def _row(hit: SearchHit) -> RankedImage:
    return RankedImage(hit.image.filename, hit.score, hit.image.predictions, next(iter(hit.image.paths), ""))


class LocalLibrary:
    """The index in the data directory, opened by this process (it holds the writer lock until `close`)."""

    def __init__(self, settings: Settings) -> None:
        self.index = ImageIndex(settings)

    def search_file(self, file: Path, k: int, metric: str, label: str | None) -> RankReport:
        _, hits = self.index.search_by_image(file.read_bytes(), file.name, k, metric, label)
        return _report(file.name, str(file.resolve()), metric, [_row(h) for h in hits])

    def search_ref(self, ref: str, k: int, metric: str, label: str | None) -> RankReport:
        info, hits = self.index.search_by_ref(ref, k, metric, label)
        return _report(info.filename, "", metric, [_row(h) for h in hits])

    def list_images(self, offset: int, limit: int) -> tuple[int, list[LibraryImage]]:
        total, items = self.index.list_images(offset, limit)
        return total, [LibraryImage.of(i) for i in items]

    def remove(self, ref: str) -> LibraryImage:
        return LibraryImage.of(self.index.delete(self.index.resolve_ref(ref).id))

    def restore(self, image_id: int) -> LibraryImage:
        return LibraryImage.of(self.index.restore(image_id))

    def prune(self, dry_run: bool) -> list[LibraryImage]:
        return [LibraryImage.of(i, with_paths=True) for i in self.index.prune(dry_run)]

    def stats(self) -> LibraryStats:
        s = self.index.stats()
        return LibraryStats(
            s.count, s.trashed, s.model, s.embedding, s.dim, s.index_type, s.engine, s.trash_retention_days
        )

    def close(self) -> None:
        self.index.close()


# Answers of the API that are about the request (an unknown reference, a bad argument): their `detail` is the
# library's own message, printed as it is in local mode.
_REQUEST_ERRORS = {404: UnknownReference, 409: AmbiguousReference, 422: InvalidArgument}


class ApiLibrary:
    """A running imgsim API (the one serving the data directory, or `--api_url`)."""

    def __init__(self, api_url: str, api_key: str | None = None, timeout: float = 600.0) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout, headers=headers)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON.

        Raises:
            UnknownReference, AmbiguousReference, InvalidArgument: the request named nothing stored, or was bad.
            ApiError: the API is unreachable, refused the key, or failed.
        """
        response = _send(self.http, method, path, **kwargs)
        error = _REQUEST_ERRORS.get(response.status_code)
        if error is not None and isinstance(detail := _json_detail(response), str):
            raise error(detail)
        return _call_checked(response, method, path)

    def search_file(self, file: Path, k: int, metric: str, label: str | None) -> RankReport:
        params = {"k": k, "metric": metric, **({"label": label} if label else {})}
        body = self._json("POST", "/search", params=params, files={"file": (file.name, file.read_bytes())})
        return _report(file.name, str(file.resolve()), metric, _rows(body))

    def search_ref(self, ref: str, k: int, metric: str, label: str | None) -> RankReport:
        params = {"ref": ref, "k": k, "metric": metric, **({"label": label} if label else {})}
        body = self._json("GET", "/search", params=params)
        return _report(str(body["query"]["filename"]), "", metric, _rows(body))

    def list_images(self, offset: int, limit: int) -> tuple[int, list[LibraryImage]]:
        body = self._json("GET", "/images", params={"offset": offset, "limit": limit})
        return int(body["total"]), [LibraryImage.from_api(i) for i in body["items"]]

    def remove(self, ref: str) -> LibraryImage:
        found = self._json("GET", "/images/lookup", params={"ref": ref})
        return LibraryImage.from_api(self._json("DELETE", f"/images/{int(found['id'])}"))

    def restore(self, image_id: int) -> LibraryImage:
        return LibraryImage.from_api(self._json("POST", f"/trash/{image_id}/restore"))

    def prune(self, dry_run: bool) -> list[LibraryImage]:
        body = self._json("POST", "/images/prune", params={"dry_run": str(dry_run).lower()})
        return [LibraryImage.from_api(i) for i in body["items"]]

    def stats(self) -> LibraryStats:
        s = self._json("GET", "/stats")
        return LibraryStats(
            int(s["count"]),
            int(s["trashed"]),
            str(s["model"]),
            str(s["embedding"]),
            int(s["dim"]),
            str(s["index_type"]),
            str(s["engine"]),
            int(s["trash_retention_days"]),
        )

    def close(self) -> None:
        self.http.close()


def _json_detail(response: httpx.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("detail") if isinstance(body, dict) else None


def _call_checked(response: httpx.Response, method: str, path: str) -> Any:
    if response.is_error:
        raise ApiError(f"{method} {path} failed with HTTP {response.status_code}: {_detail(response)}")
    return response.json()


def _rows(body: dict[str, Any]) -> list[RankedImage]:
    return [RankedImage(str(r["filename"]), float(r["score"]), _predictions(r["predictions"])) for r in body["results"]]

"""Remote mode: the same ranking as local mode, through a running imgsim API.

The folder is uploaded to `POST /ingest` in chunks that respect the server's limits (read from `/stats`),
then `POST /rank` scores the folder's images against the reference exactly as local mode does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from client.local import PROGRESS_MIN_IMAGES, keep_label, reference_in_folder, shown_name
from client.report import RankedImage, RankReport
from index.errors import ImgsimError, InvalidArgument
from index.ingest import list_image_files
from index.model.registry import Prediction
from index.search import resolve_label

MULTIPART_OVERHEAD = 1024  # bytes of part headers allowed per file when packing a request under the limit
RETRY_FOR_S = 120.0  # how long a 503 with Retry-After (model loading, queue full) is waited out


class ApiError(ImgsimError):
    """The API could not be reached, or answered an error to a request that should have worked."""


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if detail else response.text[:200] or response.reason_phrase


def _send(http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Send a request, waiting and retrying while the API answers 503 with Retry-After (starting or busy)."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {http.base_url}: {exc}") from exc
        retry_after = response.headers.get("retry-after", "")
        if response.status_code != 503 or not retry_after.isdigit() or time.monotonic() > deadline:
            return response
        time.sleep(min(float(retry_after), 5.0))


def _call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Send a request; any error status or transport failure becomes an `ApiError`."""
    response = _send(http, method, path, **kwargs)
    if response.is_error:
        raise ApiError(f"{method} {path} failed with HTTP {response.status_code}: {_detail(response)}")
    return response


def chunk_files(
    files: Sequence[Path], max_files: int, max_bytes: int
) -> Iterator[tuple[list[Path], list[tuple[Path, str]]]]:
    """Group files into requests of at most `max_files` files and `max_bytes` bytes; a file that cannot fit
    in any request is returned as (file, why) beside the chunk it would have joined."""
    chunk: list[Path] = []
    size = MULTIPART_OVERHEAD
    too_big: list[tuple[Path, str]] = []
    for path in files:
        need = path.stat().st_size + MULTIPART_OVERHEAD
        if need + MULTIPART_OVERHEAD > max_bytes:
            too_big.append((path, f"larger than the API's upload limit of {max_bytes} bytes"))
            continue
        if chunk and (len(chunk) == max_files or size + need > max_bytes):
            yield chunk, too_big
            chunk, size, too_big = [], MULTIPART_OVERHEAD, []
        chunk.append(path)
        size += need
    if chunk or too_big:
        yield chunk, too_big


def _post_ingest(http: httpx.Client, paths: Sequence[Path]) -> httpx.Response:
    files = [("files", (p.name, p.read_bytes())) for p in paths]
    return _send(http, "POST", "/ingest", files=files)


def ingest_chunk(http: httpx.Client, paths: Sequence[Path]) -> dict[Path, dict[str, Any] | str]:
    """Upload files; each maps to its ingest result, or to why it was refused.

    The API stores all of a request or nothing, so a refused request is retried file by file to find out
    which files are unusable.

    Raises:
        ApiError: the API is unreachable or fails (5xx).
    """
    if not paths:
        return {}
    response = _post_ingest(http, paths)
    if response.status_code == 200:
        return dict(zip(paths, response.json()["results"], strict=True))
    if response.status_code in (401, 403) or not 400 <= response.status_code < 500:  # not about the files
        raise ApiError(f"POST /ingest failed with HTTP {response.status_code}: {_detail(response)}")
    if len(paths) > 1:
        out: dict[Path, dict[str, Any] | str] = {}
        for path in paths:
            out.update(ingest_chunk(http, [path]))
        return out
    return {paths[0]: _detail(response).removeprefix(f"{paths[0].name}: ")}


def rank_folder_remote(
    api_url: str,
    folder: Path,
    ref: Path,
    metric: str,
    show_progress: bool,
    *,
    timeout: float = 600.0,
    api_key: str | None = None,
    recursive: bool = False,
    label: str | None = None,
) -> RankReport:
    """Upload `folder` to the API at `api_url`, then rank its images against `ref` (same report as local).

    Raises:
        InvalidArgument: the folder or the reference is not usable.
        ApiError: the API is unreachable or fails.
    """
    started = time.perf_counter()
    folder_files = list_image_files(folder, recursive)
    ref_file = reference_in_folder(folder, ref, folder_files)
    files = folder_files if ref_file in folder_files else [*folder_files, ref_file]
    if label:
        resolve_label(label)  # an unknown class fails before any upload
    outcomes: dict[Path, dict[str, Any] | str] = {}
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout, headers=headers) as http:
        limits = _call(http, "GET", "/stats").json()["limits"]
        bar = tqdm(total=len(files), unit="img", disable=not show_progress or len(files) < PROGRESS_MIN_IMAGES)
        with bar:
            for chunk, too_big in chunk_files(files, limits["max_files_per_request"], limits["max_upload_bytes"]):
                outcomes.update(ingest_chunk(http, chunk))
                outcomes.update(too_big)
                bar.update(len(chunk) + len(too_big))
        ids = {path: int(r["id"]) for path in files if isinstance(r := outcomes.get(path), dict)}
        skipped = [(path.name, r) for path in files if isinstance(r := outcomes.get(path), str)]
        ref_id = ids.get(ref_file)
        if ref_id is None:
            why = next((w for n, w in skipped if n == ref_file.name), "could not be indexed")
            raise InvalidArgument(f"reference image {ref_file.name}: {why}")
        body = {"ref": str(ref_id), "ids": list(dict.fromkeys(ids.values())), "metric": metric}
        ranked = {r["id"]: r for r in _call(http, "POST", "/rank", json=body).json()["results"]}
    rows = [
        RankedImage(
            shown_name(path.resolve(), folder, recursive),
            float(ranked[image_id]["score"]),
            _predictions(ranked[image_id]["predictions"]),
            str(path.resolve()),
        )
        for path, image_id in ids.items()
        if path != ref_file
    ]
    rows = keep_label(rows, label)
    rows.sort(key=lambda r: (r.score if metric == "euclidean" else -r.score, r.file))
    statuses = [r["status"] for r in outcomes.values() if isinstance(r, dict)]
    ref_result = outcomes[ref_file]
    assert isinstance(ref_result, dict)
    return RankReport(
        reference_predictions=_predictions(ref_result["predictions"]),
        reference_path=str(ref_file),
        reference=ref_file.name,
        metric=metric,
        rows=rows,
        added=statuses.count("added"),
        existing=statuses.count("exists"),
        restored=statuses.count("restored"),
        skipped=skipped,
        seconds=time.perf_counter() - started,
    )


def _predictions(raw: list[dict[str, Any]]) -> list[Prediction]:
    return [Prediction(p["label"], int(p["class_index"]), float(p["score"])) for p in raw]

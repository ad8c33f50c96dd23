"""Multipart uploads to library `ImageSource`s."""

from __future__ import annotations

import re

from fastapi import UploadFile

from index.config import Settings
from index.errors import InvalidArgument
from index.pipeline import ImageSource

MAX_NAME_LENGTH = 255
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def upload_name(filename: str | None, position: int) -> str:
    """The client's file name without any directory part; only ever stored as a label, never used as a path."""
    name = _UNPRINTABLE.sub("", (filename or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:MAX_NAME_LENGTH] or f"upload-{position}"


async def read_uploads(files: list[UploadFile], settings: Settings) -> list[ImageSource]:
    """The uploaded files as sources, in order.

    Raises:
        InvalidArgument: no file, or more than `settings.max_files_per_request`.
    """
    if not files:
        raise InvalidArgument("no file uploaded")
    if len(files) > settings.max_files_per_request:
        raise InvalidArgument(f"{len(files)} files in one request; the limit is {settings.max_files_per_request}")
    # The body was already streamed to spooled temporary files within the size limit; reading is async I/O.
    return [ImageSource(name=upload_name(f.filename, n), data=await f.read()) for n, f in enumerate(files, 1)]

"""Errors the library raises; the web layer and the CLI each map them to one response in one place."""

from __future__ import annotations


class ImgsimError(Exception):
    """Base class of every error a caller is expected to handle."""


class ImageDecodeError(ImgsimError):
    """The bytes are not a readable image (empty, truncated, corrupt or not an image at all)."""


class UnsupportedImageFormat(ImageDecodeError):
    """The bytes are an image in a format this service does not accept."""


class ImageTooComplex(ImageDecodeError):
    """The image would take too long to decode: a progressive JPEG with more scans than any encoder writes,
    or a decode that ran past its time budget."""


class ImageTooLarge(ImgsimError):
    """The image has more pixels than the configured limit."""


class DecodeBudgetExceeded(ImageTooLarge):
    """Decoding the image would need more memory than the decode budget holds in all."""


class UnknownReference(ImgsimError):
    """No stored image matches the given id, hash or name."""


class ImageInTrash(UnknownReference):
    """The image is in the trash: hidden from search and listings until it is restored."""


class NotInTrash(UnknownReference):
    """Restoring or deleting for good asks for an image in the trash, and this one is not there."""


class ImageInUse(ImgsimError):
    """The image cannot be deleted for good right now: an ingest of its bytes is restoring it. Retry."""


class IngestConflict(ImgsimError):
    """Stored content the ingest counted on was deleted for good meanwhile; nothing was stored. Retry."""


class AmbiguousReference(ImgsimError):
    """A file name matches more than one stored image."""


class ModelMismatch(ImgsimError):
    """The index was built with another model or embedding definition than the one in use."""


class UnknownModel(ImgsimError):
    """The model name is not in the registry."""


class WeightsNotFound(ImgsimError):
    """A model's weights are not available locally (they are never downloaded)."""


class InvalidArgument(ImgsimError):
    """A search or listing argument is out of range (k, metric, page...)."""


class StorageError(ImgsimError):
    """The disk is full or failed while writing; nothing half-written was kept."""


class DataDirLocked(ImgsimError):
    """Another process writes to this data directory."""

    def __init__(self, message: str, holder: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class DataDirDamaged(ImgsimError):
    """The data directory holds images but its database is empty or missing: refused, never reset."""


class Overloaded(ImgsimError):
    """Too much work is queued; the caller should retry a little later."""


class DeadlineExceeded(Overloaded):
    """The work waited longer than the per-request deadline."""


class DecodeBusy(Overloaded):
    """Other decodes hold the decode budget; the caller should retry a little later."""


class BackendUnavailable(ImgsimError):
    """A configured database, vector store or blob storage cannot be reached or used (wrong URL, wrong kind,
    server down, a collection built for another model or dimension)."""


class EngineUnavailable(UnknownModel):
    """The inference engine asked for is not installed, or cannot run this model, device or precision."""

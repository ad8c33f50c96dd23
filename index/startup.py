"""Reading the settings once at start, with a problem reported as one line instead of a traceback."""

from __future__ import annotations

from pydantic import ValidationError

from index.config import Settings
from index.errors import ImgsimError


class InvalidSettings(ImgsimError):
    """An `IMGSIM_*` setting has a value that cannot be used."""


def describe_validation_error(exc: ValidationError) -> str:
    """'IMGSIM_PRECISION: Input should be ...; IMGSIM_BATCH_SIZE: ...' (values are not repeated: keys are secret)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in error["loc"][:1]) or "settings"
        parts.append(f"IMGSIM_{field.upper()}: {error['msg']}")
    return "invalid setting " + "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """The environment's settings with `overrides` applied.

    Raises:
        InvalidSettings: a value is invalid (one line naming each variable).
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise InvalidSettings(describe_validation_error(exc)) from None


def follow_recorded_embedding(settings: Settings) -> Settings:
    """`settings` with the embedding definition the index in its data directory was built with, when none
    was asked for (`IMGSIM_EMBEDDING`, a command's `--embedding`) and the model is the one recorded; an index
    built with `rebuild-index --embedding mean --reembed` is then used as it is. An explicit definition
    that differs is still refused when the index opens.

    Raises:
        InvalidArgument, DataDirDamaged, BackendUnavailable: the store cannot be opened.
    """
    from index.model.registry import EMBEDDINGS, resolve_model
    from index.storage.database import SQLITE_FILE
    from index.storage.store import ImageStore

    if "embedding" in settings.model_fields_set:
        return settings
    if settings.database_url is None and not (settings.data_dir / SQLITE_FILE).is_file():
        return settings  # nothing recorded yet
    store = ImageStore(settings.data_dir, settings.database_url, settings.blob_url)
    try:
        built_with = store.get_meta("model") or ""
    finally:
        store.close()
    model, _, embedding = built_with.partition(":")
    if embedding not in EMBEDDINGS or model != resolve_model(settings.model).name:
        return settings
    return settings.model_copy(update={"embedding": embedding})

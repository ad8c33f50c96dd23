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

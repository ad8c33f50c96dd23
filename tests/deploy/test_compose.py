"""The compose file takes every password and key from the environment, with no default, and requires keys."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

COMPOSE = (REPO_ROOT / "deploy" / "compose.yaml").read_text()
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|API_KEYS|TOKEN")
# `name: value` lines of the services' environments (comments and the x-imgsim anchor's keys included).
SETTINGS = [
    (m["name"], m["value"].strip())
    for m in re.finditer(r"^\s+(?P<name>[A-Z][A-Z0-9_]*): (?P<value>.*)$", COMPOSE, re.MULTILINE)
]


def test_every_password_and_key_is_required_from_the_environment() -> None:
    secrets = [(name, value) for name, value in SETTINGS if SECRET_NAME.search(name)]
    assert {name for name, _ in secrets} >= {
        "POSTGRES_PASSWORD",
        "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY",
        "MINIO_ACCESS_KEY_ID",
        "MINIO_SECRET_ACCESS_KEY",
        "IMGSIM_API_KEYS",
    }
    for name, value in secrets:
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), f"{name} must be ${{VAR:?message}}, not {value!r}"
    # The database URL embeds the password: the same rule holds inside it.
    (url,) = [value for name, value in SETTINGS if name == "IMGSIM_DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:?" in url
    assert "minioadmin" not in COMPOSE and ":-imgsim" not in COMPOSE


def test_the_replicas_refuse_to_start_without_keys() -> None:
    assert ("IMGSIM_REQUIRE_KEYS", '"true"') in SETTINGS

"""The lock files (.ci/lock) agree with the requirements they were made from, hash every file, and the dependency
audit (.ci/audit.py) fails on a release with a known vulnerability."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([^\]]*)\])?==(\S+)")
# Each lock, and the requirements files whose pins it must hold.
LOCKS = {
    "requirements-dev.lock": ["requirements-dev.txt"],
    "apps/requirements.lock": ["apps/requirements.txt"],
    "requirements.lock": ["requirements.txt"],
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: Path) -> dict[str, str]:
    """The `name==version` pins of a requirements file and of those it includes with `-r`."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= requirement_pins(path.parent / line[3:].strip())
        elif match := PIN.match(line):
            found[canonical(match[1])] = match[3].rstrip(";")
    return found


class Locked(NamedTuple):
    version: str
    hashes: list[str]
    extras: set[str]  # what it is pinned with: `cachecontrol[filecache]==...`


def lock_entries(path: Path) -> dict[str, Locked]:
    """Each locked requirement's version, hashes and extras (a requirement continues over lines ending in a
    backslash)."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    entries = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = PIN.match(line.strip())
        assert match, f"{path.name}: not a pinned requirement: {line.strip()[:80]}"
        extras = {canonical(extra.strip()) for extra in (match[2] or "").split(",") if extra.strip()}
        entries[canonical(match[1])] = Locked(match[3], re.findall(r"--hash=sha256:([0-9a-f]{64})", line), extras)
    return entries


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_locked_requirement_is_pinned_with_at_least_one_sha256(lock: str) -> None:
    entries = lock_entries(REPO_ROOT / lock)
    assert len(entries) > 20
    unhashed = sorted(name for name, locked in entries.items() if not locked.hashes)
    assert unhashed == []


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_each_lock_holds_the_versions_its_requirements_pin(lock: str) -> None:
    entries = lock_entries(REPO_ROOT / lock)
    for requirements in LOCKS[lock]:
        wanted = requirement_pins(REPO_ROOT / requirements)
        assert wanted
        differing = {
            name: (version, entries.get(name, ("missing",))[0])
            for name, version in wanted.items()
            if entries.get(name, ("missing",))[0] != version
        }
        assert differing == {}, f"{lock} disagrees with {requirements} (pinned, locked): run .ci/lock"


def test_a_dependency_asked_for_with_extras_is_locked_with_them() -> None:
    # pip under --require-hashes looks a dependency asked for as `name[extra]>=x` up on the index again unless the
    # lock pins `name[extra]==v`, and refuses the newer release it finds there as unpinned.
    extras = {name: locked.extras for name, locked in lock_entries(REPO_ROOT / "requirements-dev.lock").items()}
    missing = []
    for name, own_extras in extras.items():
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:  # locked for another platform or Python
            continue
        for requirement in map(Requirement, requires):
            wanted = {canonical(extra) for extra in requirement.extras}
            if not wanted or canonical(requirement.name) not in extras:
                continue
            marker = requirement.marker
            if marker and not any(marker.evaluate({"extra": extra}) for extra in own_extras | {""}):
                continue
            if not wanted <= extras[canonical(requirement.name)]:
                missing.append(f"{name} asks for {requirement}")
    assert missing == [], "run .ci/lock"


def test_the_image_lock_holds_the_milvus_client_the_dockerfile_installs() -> None:
    client = requirement_pins(REPO_ROOT / "requirements-milvus.txt")["pymilvus"]
    assert lock_entries(REPO_ROOT / "requirements.lock")["pymilvus"][0] == client
    assert "--require-hashes -r requirements.lock" in (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")


def audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / ".ci" / "audit.py"), "--offline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_offline_audit_fails_on_a_release_with_a_known_vulnerability(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("jinja2==2.10\nrequests==2.34.2\n", encoding="utf-8")
    result = audit(str(requirements))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "jinja2==2.10" in result.stdout and "CVE-2020-28493" in result.stdout
    assert "requests" not in result.stdout.split("audit:")[0]
    assert "1 known vulnerability" in result.stdout


def test_the_offline_audit_passes_the_locks_and_says_which_database_it_read() -> None:
    result = audit(*(str(REPO_ROOT / lock) for lock in sorted(LOCKS)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked offline against safety-db (advisories to 2021-07-01): 0 known vulnerabilities" in result.stdout

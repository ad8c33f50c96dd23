"""Audits the lock files for known vulnerabilities: exit 1 naming each pinned release an advisory covers.

pip-audit needs an advisory service: OSV (api.osv.dev) or PyPI's per-release JSON (pypi.org/pypi/NAME/VERSION/json).
Where neither answers (a network that reaches only the package registries' indexes and files), pip-audit has no
local database to read, so the pins are checked against the one advisory database a package registry ships:
PyPI's `safety-db` (PyUp's insecure_full.json), whose advisories end in July 2021. The output says which ran.

    .venv/bin/python .ci/audit.py requirements-dev.lock apps/requirements.lock
    .venv/bin/python .ci/audit.py --offline FILE...   # skip the probes
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
PROBE_TIMEOUT_S = 10


def pins(path: Path) -> dict[str, str]:
    """`name == version` for every pinned requirement in a requirements or lock file."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


def osv_answers() -> bool:
    try:
        request = urllib.request.Request(
            "https://api.osv.dev/v1/query", data=b'{"package":{"name":"pip","ecosystem":"PyPI"},"version":"24.0"}'
        )
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def pypi_release_json_answers() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/pypi/pip/24.0/json", timeout=PROBE_TIMEOUT_S) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def pip_audit(service: str, files: list[Path]) -> int:
    print(f"audit: pip-audit against {service}", flush=True)
    status = 0
    for path in files:
        command = [sys.executable, "-m", "pip_audit", "--strict", "--disable-pip", "--require-hashes", "-s", service]
        status |= subprocess.call([*command, "-r", str(path)])
    return status


def covers(spec: str, release: Version) -> bool:
    try:
        return release in SpecifierSet(spec, prereleases=True)
    except InvalidSpecifier:
        return False


def offline(files: list[Path]) -> int:
    # The package's own __init__ opens a path relative to the working directory: read its file without importing it.
    source = Path(str(metadata.distribution("safety-db").locate_file("safety_db/insecure_full.json")))
    database = json.loads(source.read_text(encoding="utf-8"))
    meta = database.pop("$meta", {})
    dated = datetime.fromtimestamp(meta.get("timestamp", 0), UTC).date()
    advisories = {canonicalize_name(name): entries for name, entries in database.items()}
    checked, found = 0, 0
    for path in files:
        for name, version in sorted(pins(path).items()):
            checked += 1
            try:
                release = Version(version)
            except InvalidVersion:
                continue
            for entry in advisories.get(name, []):
                spec = next((spec for spec in entry.get("specs", []) if covers(spec, release)), None)
                if spec is not None:
                    found += 1
                    advisory = " ".join(entry.get("advisory", "").split())[:160]
                    print(f"{path}: {name}=={version} is {spec}: {entry.get('cve') or entry['id']}: {advisory}")
    print(
        f"audit: {checked} pins checked offline against safety-db (advisories to {dated}): "
        f"{found} known vulnerabilit{'y' if found == 1 else 'ies'}"
    )
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--offline", action="store_true", help="check against safety-db without probing services")
    args = parser.parse_args(argv)
    if not args.offline:
        if osv_answers():
            return pip_audit("osv", args.files)
        if pypi_release_json_answers():
            return pip_audit("pypi", args.files)
        print("audit: neither api.osv.dev nor PyPI's per-release JSON answers; pip-audit cannot run here")
    return offline(args.files)


if __name__ == "__main__":
    sys.exit(main())

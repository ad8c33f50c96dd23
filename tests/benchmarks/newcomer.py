"""The newcomer's path: the README's two Quick start commands in a fresh clone, with an empty model cache.

    python -m tests.benchmarks.newcomer [--only first] [--keep]

Clones the repository's committed HEAD into a new temporary folder (nothing beside it: no shared data), reads
the two commands from the README's Quick start (the first two ```bash blocks under it), and runs each in the
clone with `IMGSIM_MODEL_CACHE_DIR` pointing at an empty folder, timing every `&&` step. After the first
command it runs the quick start's ranking once more (the second run of a user), and measures the venv: its
size, and whether it holds torch or GPU packages. The package cache (pip's, and the registry's) is left as it
is: a warm cache, as on a machine that installed these packages before. The second command's closing pytest
line is recorded too. Prints a table and writes bench-results/newcomer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "bench-results" / "newcomer.json"
# Distributions that only a GPU (or the torch extra) needs.
GPU_PACKAGES = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$", re.IGNORECASE)


def quick_start_commands(readme: str) -> list[str]:
    """The bash blocks of the README's Quick start section, in order."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)]


def du_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run_step(command: str, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    head = done.stdout.splitlines()[:7]
    return {
        "command": command,
        "seconds": round(seconds, 1),
        "exit": done.returncode,
        "stdout_head": head,
        "tail": tail,
    }


def run_command(command: str, cwd: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """Each `&&` step of `command` in turn, stopping at the first that fails."""
    steps = []
    for part in (p.strip() for p in command.split("&&")):
        steps.append(run_step(part, cwd, env))
        print(f"  {steps[-1]['seconds']:7.1f} s  exit {steps[-1]['exit']}  {part}", file=sys.stderr, flush=True)
        if steps[-1]["exit"] != 0:
            break
    return steps


def venv_facts(venv: Path) -> dict[str, Any]:
    listed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    names = [p["name"] for p in json.loads(listed.stdout)]
    return {
        "venv_mb": round(du_bytes(venv) / 1e6),
        "packages": len(names),
        "gpu_or_torch_packages": sorted(n for n in names if GPU_PACKAGES.match(n)),
        "commands": sorted(
            c for c in ("similarity-analysis", "find-duplicates", "rebuild-index") if (venv / "bin" / c).is_file()
        ),
    }


def pytest_line(steps: list[dict[str, Any]]) -> str:
    for line in reversed(steps[-1]["tail"] if steps else []):
        if re.search(r"\d+ (passed|failed)", line):
            return line.strip("= ")
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["first", "both"], default="both", help="run only the first command")
    p.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = p.parse_args(argv)

    commands = quick_start_commands((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) >= 2, "the README's Quick start has fewer than two bash blocks"
    base = Path(tempfile.mkdtemp(prefix="imgsim-newcomer-"))
    clone, cache = base / "clone", base / "model-cache"
    cache.mkdir()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGSIM_", "VIRTUAL_ENV"))}
    env["IMGSIM_MODEL_CACHE_DIR"] = str(cache)
    result: dict[str, Any] = {
        "commit": head.stdout.strip(),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 1),
            **platform.uname()._asdict(),
        },
        "first": {},
    }
    try:
        print(f"first command, in {clone}:", file=sys.stderr)
        first = run_command(commands[0], clone, env)
        again = run_step(commands[0].split("&&")[-1].strip(), clone, env)
        result["first"] = {
            "steps": first,
            "seconds": round(sum(s["seconds"] for s in first), 1),
            "ok": all(s["exit"] == 0 for s in first),
            "second_run_seconds": again["seconds"],
            "model_cache_after": sorted(p.name for p in cache.rglob("*") if p.is_file()),
            **venv_facts(clone / ".venv"),
        }
        if args.only == "both":
            print("second command:", file=sys.stderr)
            second = run_command(commands[1], clone, env)
            result["second"] = {
                "steps": second,
                "seconds": round(sum(s["seconds"] for s in second), 1),
                "ok": all(s["exit"] == 0 for s in second),
                "pytest": pytest_line(second),
                **venv_facts(clone / ".venv"),
            }
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwritten to {RESULTS}")
    return 0 if result["first"].get("ok") and result.get("second", {"ok": True})["ok"] else 1


def print_table(result: dict[str, Any]) -> None:
    print(
        f"commit {result['commit'][:12]}, {result['machine']['cpus']} CPUs, load {result['machine']['load_average_1m']}"
    )
    print(f"{'command':<8}  {'step':<62}  {'seconds':>8}  exit")
    for which in ("first", "second"):
        for step in result.get(which, {}).get("steps", []):
            print(f"{which:<8}  {step['command'][:62]:<62}  {step['seconds']:>8.1f}  {step['exit']}")
    first = result["first"]
    if first:
        print(
            f"\nfirst command: {first['seconds']:.1f} s in all; the ranking again: {first['second_run_seconds']:.1f} s"
        )
        print(
            f"venv after it: {first['venv_mb']} MB, {first['packages']} packages, torch/GPU: "
            f"{', '.join(first['gpu_or_torch_packages']) or 'none'}; commands: {', '.join(first['commands'])}"
        )
    if "second" in result:
        second = result["second"]
        print(f"second command: {second['seconds']:.1f} s; venv {second['venv_mb']} MB; {second['pytest']}")


if __name__ == "__main__":
    raise SystemExit(main())

"""The topology of deploy/compose.yaml from local parts, without a container engine: two API replicas (uvicorn,
`python -m app.serve`) on one PostgreSQL 15 database, one Milvus 2.3.5 standalone server (deploy/local_milvus.py)
and one blob directory, behind Debian's nginx running deploy/nginx.conf (its upstreams and port rewritten).

    sudo .venv/bin/python deploy/local.py --data /var/tmp/imgsim-local --port 8080    # Ctrl+C stops everything

Needs root (Milvus's network namespace; PostgreSQL runs as the `postgres` user), Debian's `postgresql` and
`nginx` packages and the project's virtual environment with requirements-milvus-server.txt. Everything binds to
127.0.0.1. The data directory keeps the library between runs. Keys: IMGSIM_API_KEYS if set, else a new write
key and read key, printed. tests/deploy/test_replicas.py runs nginx the same way (`nginx_command`).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, suppress
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from deploy.local_milvus import LocalMilvus  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_command(folder: Path, replicas: list[str], port: int) -> list[str]:
    """nginx running deploy/nginx.conf in `folder`, its upstreams pointed at `replicas` and listening on `port`."""
    folder.mkdir(parents=True, exist_ok=True)
    site = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    for n, url in enumerate(replicas, start=1):
        site, found = re.subn(rf"server imgsim-{n}:8080", f"server {url.removeprefix('http://')}", site)
        if found != 1:
            raise RuntimeError(f"deploy/nginx.conf no longer names imgsim-{n}:8080")
    site, found = re.subn(r"listen 80;", f"listen 127.0.0.1:{port};", site)
    if found != 1:
        raise RuntimeError("deploy/nginx.conf no longer says `listen 80;`")
    (folder / "site.conf").write_text(site)
    (folder / "nginx.conf").write_text(
        # The compose file runs this site in nginx's image; here, a minimal main configuration around it.
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\nevents {{}}\n"
        + f"http {{\n  access_log off;\n  client_body_temp_path {folder / 'body'};\n"
        + f"  proxy_temp_path {folder / 'proxy'};\n  include {folder / 'site.conf'};\n}}\n"
    )
    return [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log")]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"port {port} not open after {timeout} s:\n{log.read_text()[-3000:]}")


def _stopper(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_postgres(folder: Path, port: int, stack: ExitStack) -> str:
    """PostgreSQL 15 on `folder` (made on first run, with a password kept in `folder`/../postgres.password)."""
    password_file = folder.parent / "postgres.password"
    run_as = ["runuser", "-u", "postgres", "--"]
    if not (folder / "PG_VERSION").exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "postgres", "postgres")
        password_file.write_text(secrets.token_hex(16))
        password_file.chmod(0o600)
        pwfile = folder.parent / ".postgres.pwfile"  # initdb wants its folder empty
        pwfile.write_text(password_file.read_text())
        shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(
            [*run_as, str(PG_BIN / "initdb"), "-D", str(folder), "-A", "scram-sha-256", "-U", "imgsim",
             f"--pwfile={pwfile}"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        pwfile.unlink()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    pg_ctl = [*run_as, str(PG_BIN / "pg_ctl"), "-D", str(folder)]
    subprocess.run([*pg_ctl, "-l", str(folder / "log"), "-w", "-o", options, "start"], check=True)
    stack.callback(subprocess.run, [*pg_ctl, "-m", "fast", "stop"], check=False)
    password = password_file.read_text().strip()
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={port} user=imgsim password={password} dbname=postgres") as conn:
        conn.autocommit = True
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'imgsim'").fetchone() is None:
            conn.execute("CREATE DATABASE imgsim")
    return f"postgresql+psycopg://imgsim:{password}@127.0.0.1:{port}/imgsim"


def start_replica(n: int, data: Path, env: dict[str, str], stack: ExitStack) -> str:
    port = free_port()
    log = data / f"imgsim-{n}.log"
    environment = {**os.environ, **env, "IMGSIM_DATA_DIR": str(data / f"imgsim-{n}")}
    command = [sys.executable, "-m", "app.serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)
    stack.callback(_stopper, proc)
    wait_for_port(port, proc, log)
    return f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/var/tmp/imgsim-local"), help="kept between runs")
    parser.add_argument("--port", type=int, default=8080, help="nginx's port on 127.0.0.1 (default 8080)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root (Milvus's network namespace, PostgreSQL as the postgres user)")
    data = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o755)  # the postgres user must reach its folder
    keys = os.environ.get("IMGSIM_API_KEYS", "")
    write_key = read_key = ""
    if not keys:
        write_key, read_key = secrets.token_hex(16), secrets.token_hex(16)
        keys = f"{write_key}:write,{read_key}:read"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with ExitStack() as stack:
        database_url = start_postgres(data / "postgres", free_port(), stack)
        milvus = stack.enter_context(LocalMilvus(data / "milvus"))
        env = {  # as x-imgsim in compose.yaml
            "IMGSIM_DATABASE_URL": database_url,
            "IMGSIM_VECTOR_STORE": "milvus",
            "IMGSIM_MILVUS_URI": milvus.uri,
            "IMGSIM_MILVUS_INDEX": "HNSW",
            "IMGSIM_BLOB_URL": f"file://{data / 'blobs'}",
            "IMGSIM_API_KEYS": keys,
            "IMGSIM_REQUIRE_KEYS": "true",
        }
        replicas = [start_replica(n, data, env, stack) for n in (1, 2)]
        log = data / "nginx" / "error.log"
        command = nginx_command(data / "nginx", replicas, args.port)
        nginx = subprocess.Popen(command)
        stack.callback(_stopper, nginx)
        wait_for_port(args.port, nginx, log)
        print(f"imgsim on http://127.0.0.1:{args.port} (replicas {', '.join(replicas)}; data {data})", flush=True)
        if write_key:
            print(f"write key: {write_key}\nread key:  {read_key}", flush=True)
        print("Ctrl+C stops everything", flush=True)
        with suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()

"""A Milvus standalone server from the `milvus` package (embedded Milvus 2.3), kept to loopback.

The server binds its gRPC and metrics ports on every interface and ignores its address settings for that, so it
runs inside a network namespace that has only a loopback device (and a private /run, where it takes a lock). A
relay started in that namespace, holding a listening socket made on the host's 127.0.0.1, forwards one host port
to the server: clients use `http://127.0.0.1:PORT` and nothing else can reach it. The namespace outlives the
server, so `stop()` then `start()` restarts it behind the same port. Needs root (unshare, nsenter).

    python deploy/local_milvus.py --data /tmp/milvus --port 19530     # serve until Ctrl+C

Used by the tests (the `postgresql-milvus-server` configuration), the benchmarks and `deploy/local.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# The `milvus` package picks each port by trying to bind it, from 19530 up for the client (proxy) port: after a
# restart, connections of the last run still in TIME_WAIT on 19530 move it to another. The relay forwards to the
# port the running server was given, which start() writes to this file (beside the server's data).
PORT_FILE = "proxy.port"
_PROXY_PORT = re.compile(r"^proxy:\n(?:(?:[ #].*)?\n)*?  port: (\d+)", re.MULTILINE)
_STARTED = "Started:"  # what the `milvus` package prints once the server answers its health check
_LAUNCH = "import sys, milvus\nsys.argv = ['milvus-server', '--data', sys.argv[1]]\nmilvus.main()\n"


class LocalMilvus:
    """One Milvus standalone server on `data_dir`, reachable on 127.0.0.1:`port` (0: any free port)."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"a local Milvus server needs {tool} (util-linux, iproute2)")
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self._holder: subprocess.Popen[bytes] | None = None
        self._relay: subprocess.Popen[bytes] | None = None
        self._server: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The launcher's process id while the server runs (it and the server binary are its children or it)."""
        return None if self._server is None else self._server.pid

    @property
    def log(self) -> Path:
        return self.data_dir / "launcher.log"

    def _enter(self, *namespaces: str) -> list[str]:
        assert self._holder is not None
        pid = self._holder.pid
        files = {"net": "net", "mount": "mnt"}
        return ["nsenter", *(f"--{ns}=/proc/{pid}/ns/{files[ns]}" for ns in namespaces), "--"]

    def _namespace(self) -> None:
        """The loopback-only network namespace and private /run, held by a sleeping process."""
        script = "ip link set lo up && mount -t tmpfs tmpfs /run && echo ready && exec sleep infinity"
        self._holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._holder.stdout is not None
        if self._holder.stdout.readline().strip() != b"ready":
            self._holder.kill()
            raise RuntimeError("could not make a network namespace for Milvus (unshare needs root)")
        fd = self._listener.fileno()
        self._relay = subprocess.Popen(
            [*self._enter("net"), sys.executable, __file__, "--relay-fd", str(fd), "--data", str(self.data_dir)],
            pass_fds=[fd],
            start_new_session=True,
        )

    def start(self, timeout: float = 180.0) -> LocalMilvus:
        """Start the server (making the namespace on first use) and wait until it answers."""
        if self._holder is None:
            self._namespace()
        if self._server is not None:
            return self
        (self.data_dir / PORT_FILE).unlink(missing_ok=True)  # the relay refuses connections until it is written
        with open(self.log, "w") as log:
            self._server = subprocess.Popen(
                [*self._enter("net", "mount"), sys.executable, "-c", _LAUNCH, str(self.data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while _STARTED not in self.log.read_text(errors="replace"):
            if self._server.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"Milvus did not start (see {self.data_dir / 'logs'}):\n{tail}")
            time.sleep(0.2)
        config = (self.data_dir / "configs" / "milvus.yaml").read_text()
        port = _PROXY_PORT.search(config)
        if port is None:
            self.stop()
            raise RuntimeError("no proxy port in the Milvus configuration it wrote")
        (self.data_dir / f"{PORT_FILE}.new").write_text(port.group(1))
        (self.data_dir / f"{PORT_FILE}.new").replace(self.data_dir / PORT_FILE)
        return self

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGTERM and a graceful shutdown, or SIGKILL as in a crash); the namespace and the
        port stay, for `start()` again."""
        if self._server is None:
            return
        group = self._server.pid
        # The launcher and the server binary share one process group: both get the signal (the launcher's own
        # SIGINT handler would kill the server after one second, leaving its etcd session to expire on restart).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL if kill else signal.SIGTERM)
        self._server.wait()
        # With clients connected, the server's graceful stop can wait on them for minutes: 10 s, then SIGKILL.
        deadline = time.monotonic() + 10
        while _group_alive(group):
            if time.monotonic() > deadline:
                os.killpg(group, signal.SIGKILL)
            time.sleep(0.1)
        self._server = None

    def close(self) -> None:
        """Stop everything and release the port."""
        self.stop()
        for proc in (self._relay, self._holder):
            if proc is not None:
                _end(proc, signal.SIGTERM, grace=5)
        self._relay = self._holder = None
        self._listener.close()

    def __enter__(self) -> LocalMilvus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _end(proc: subprocess.Popen[bytes], sig: int, grace: float) -> None:
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _relay(fd: int, data_dir: Path) -> None:
    """Forward every connection on the inherited (host) listening socket to the server in this namespace."""

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            port = int((data_dir / PORT_FILE).read_text())
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except (OSError, ValueError):
            writer.close()  # the server is down (stopped or restarting): the client sees a refused call
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(forward, sock=socket.socket(fileno=fd))
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="the server's data directory")
    parser.add_argument("--port", type=int, default=19530, help="the host port on 127.0.0.1 (default 19530)")
    parser.add_argument("--relay-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay_fd is not None:
        asyncio.run(_relay(args.relay_fd, args.data))
        return
    if args.data is None:
        parser.error("--data is required")
    server = LocalMilvus(args.data, args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.start()
        print(f"Milvus {server.uri} (data {server.data_dir})", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()

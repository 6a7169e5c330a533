"""Count tokens with the reader's own tokenizer, over its HTTP API.

vLLM serves `POST /tokenize`; llama.cpp's server `POST /extras/tokenize/count`. Whichever
answers first is remembered. If neither does, a conservative estimate (UTF-8 bytes / 2) keeps
the prompt inside the window rather than failing the question, and the reader is not asked again
for `RETRY_AFTER_S`: probing a down or tokenizer-less reader on every count cost a question
~100 ms (two refused connections per text, several texts per question).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import lru_cache

import httpx

from core.settings import ReaderSettings

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 60.0


class ReaderTokenCounter:
    def __init__(
        self, settings: ReaderSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        root = settings.base_url.rstrip("/")
        self._root = root[: -len("/v1")] if root.endswith("/v1") else root
        self._model = settings.model
        # One client, so counts reuse a kept-alive connection instead of opening one each.
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"},
            timeout=10,
        )
        self._clock = clock
        self._endpoint: str | None = None
        self._estimate_until = float("-inf")
        self._lock = threading.Lock()
        self._counted = lru_cache(maxsize=4096)(self._ask_reader)

    def count(self, text: str) -> int:
        if self._clock() < self._estimate_until:
            return _estimate(text)
        try:
            return self._counted(text)
        except _NoTokenizerError:
            # Estimates are not cached: once the reader answers again, texts are counted for real.
            with self._lock:
                self._estimate_until = self._clock() + RETRY_AFTER_S
            logger.warning(
                "the reader has no tokenize endpoint; estimating prompt tokens for %.0f s",
                RETRY_AFTER_S,
            )
            return _estimate(text)

    def _ask_reader(self, text: str) -> int:
        endpoint = self._endpoint
        candidates = [endpoint] if endpoint else ["/tokenize", "/extras/tokenize/count"]
        for path in candidates:
            body = {"model": self._model, "prompt": text, "input": text}
            try:
                response = self._client.post(f"{self._root}{path}", json=body)
            except httpx.HTTPError:
                continue
            if response.status_code == 200 and "count" in response.json():
                with self._lock:
                    self._endpoint = path
                return int(response.json()["count"])
        raise _NoTokenizerError


class _NoTokenizerError(Exception):
    pass


def _estimate(text: str) -> int:
    return len(text.encode()) // 2 + 1

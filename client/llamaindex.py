"""A LlamaIndex retriever over ragkb's `/v1/search` (install the `ragkb[llamaindex]` extra).

retriever = RagkbLlamaRetriever(base_url="http://kb:8000", api_key=key, top_k=4)
engine = RetrieverQueryEngine.from_args(retriever, llm=OpenAILike(...))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "client.llamaindex needs llama-index-core: pip install 'ragkb[llamaindex]'"
    ) from exc

from api.schemas import SearchHitOut
from client.aio import AsyncRagkbClient
from client.hits import chunk_id, hit_metadata
from client.sync import RagkbClient


class RagkbLlamaRetriever(BaseRetriever):
    """Retrieves a ragkb tenant's chunks as LlamaIndex `NodeWithScore`s.

    Each node's text is the chunk's text, its score the fused retrieval score (or the rerank
    score when the service reranks), and its metadata the hit's provenance (document_id, path,
    title, page, section, char_start/char_end, scores, custom `metadata`), so the app can cite.
    Arguments as `client.langchain.RagkbRetriever`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        top_k: int = 4,
        filters: dict[str, Any] | None = None,
        principals: Sequence[str] | None = None,
        mode: str | None = None,
        rerank: bool = True,
        timeout_s: float = 60.0,
    ) -> None:
        super().__init__()
        self._base_url = base_url
        self._api_key = api_key
        self._search_args: dict[str, Any] = {
            "top_k": top_k,
            "filters": filters,
            "principals": list(principals) if principals is not None else None,
            "mode": mode,
            "rerank": rerank,
        }
        self._timeout_s = timeout_s
        self._client = RagkbClient(base_url, api_key, timeout_s=timeout_s)

    def _nodes(self, hits: list[SearchHitOut]) -> list[NodeWithScore]:
        return [
            NodeWithScore(
                node=TextNode(id_=chunk_id(h), text=h.text, metadata=hit_metadata(h)),
                score=h.rerank_score if h.rerank_score is not None else h.score,
            )
            for h in hits
        ]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = self._client.search(query_bundle.query_str, **self._search_args)
        return self._nodes(result.hits)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        async with AsyncRagkbClient(
            self._base_url, self._api_key, timeout_s=self._timeout_s
        ) as client:
            result = await client.search(query_bundle.query_str, **self._search_args)
        return self._nodes(result.hits)

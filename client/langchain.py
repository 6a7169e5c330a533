"""A LangChain retriever over ragkb's `/v1/search` (install the `ragkb[langchain]` extra).

retriever = RagkbRetriever(base_url="http://kb:8000", api_key=key, top_k=4)
chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm
"""

from __future__ import annotations

from typing import Any

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "client.langchain needs langchain-core: pip install 'ragkb[langchain]'"
    ) from exc
from pydantic import ConfigDict, Field, PrivateAttr

from api.schemas import SearchHitOut
from client.aio import AsyncRagkbClient
from client.hits import chunk_id, hit_metadata
from client.sync import RagkbClient


class RagkbRetriever(BaseRetriever):
    """Retrieves a ragkb tenant's chunks as LangChain `Document`s.

    Each document's `page_content` is the chunk's text and its `metadata` says where it came
    from (document_id, path, title, page, section, char_start/char_end in the document's
    extracted text, score, dense_score, rerank_score, rank, and the custom `metadata`), so the
    app can cite. `principals` are the end user's (only documents they may read are searched);
    `filters` is `/v1/search`'s filter object (path_prefix, file_types, document_ids, ...).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_url: str = Field(description="The ragkb service root, e.g. http://kb:8000.")
    api_key: str = Field(repr=False, description="A ragkb key with scope `query`.")
    top_k: int = Field(4, ge=1, le=100, description="Chunks returned per query.")
    filters: dict[str, Any] | None = None
    principals: list[str] | None = None
    mode: str | None = Field(None, description="hybrid, dense or lexical; None: the service's.")
    rerank: bool = True
    timeout_s: float = 60.0
    _client: RagkbClient | None = PrivateAttr(None)

    def _sync_client(self) -> RagkbClient:
        if self._client is None:
            self._client = RagkbClient(self.base_url, self.api_key, timeout_s=self.timeout_s)
        return self._client

    def _search_args(self) -> dict[str, Any]:
        return {
            "top_k": self.top_k,
            "filters": self.filters,
            "principals": self.principals,
            "mode": self.mode,
            "rerank": self.rerank,
        }

    def _documents(self, hits: list[SearchHitOut]) -> list[Document]:
        return [
            Document(id=chunk_id(h), page_content=h.text, metadata=hit_metadata(h)) for h in hits
        ]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        result = self._sync_client().search(query, **self._search_args())
        return self._documents(result.hits)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        # One async client per call: an httpx.AsyncClient is bound to the loop it was made on.
        async with AsyncRagkbClient(
            self.base_url, self.api_key, timeout_s=self.timeout_s
        ) as client:
            result = await client.search(query, **self._search_args())
        return self._documents(result.hits)

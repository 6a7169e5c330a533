"""The fronts an internal app plugs into, against a running `ragkb serve` with the real CPU
reader: the typed client (sync, async, streamed), LangChain and LlamaIndex retrievers driving
their own OpenAI-compatible LLM classes, and the MCP server through the SDK's own client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import AsyncRagkbClient, AuthenticationError, NotFoundError, RagkbClient
from tests.docgen import make_pdf
from tests.e2e_service import Service

pytestmark = [pytest.mark.e2e, pytest.mark.reader]

FACT_QUESTION = "What is the door code of the Lisbon office?"
FACT = "4471"


class Tenants:
    def __init__(
        self, service: Service, owner: str, stranger: str, query_only: str, readme: str
    ) -> None:
        self.url = service.url
        self.readme = readme
        self.owner = owner
        self.stranger = stranger
        self.query_only = query_only


@pytest.fixture(scope="module")
def tenants(service: Service, tmp_path_factory: pytest.TempPathFactory) -> Tenants:
    """A tenant holding a fact in one PDF (page 2) among other files; another tenant empty."""
    folder = tmp_path_factory.mktemp("fronts")
    (folder / "offices").mkdir()
    make_pdf(
        folder / "offices" / "lisbon.pdf",
        [
            ("Lisbon office", ["The Lisbon office opened in 2019 on Rua Augusta."]),
            ("Access", [f"The door code of the Lisbon office is {FACT}.", "Change it yearly."]),
        ],
    )
    (folder / "handbook.md").write_text(
        "# Handbook\n\n## Travel\n\nBook trains for trips under 500 km.\n"
    )
    owner = service.new_tenant("fronts")
    stranger = service.new_tenant("fronts-other")
    query_only = service.new_tenant("fronts-q", "--scope", "query")
    with RagkbClient(service.url, owner) as kb:
        jobs = kb.upload_folder(folder)
        assert [len(j.files) for j in jobs] == [2]
        job = kb.wait_for_job(jobs[0].id, timeout_s=300)
        assert job.progress.done == 2, job
    readme = service.new_tenant("fronts-readme")
    return Tenants(service, owner, stranger, query_only, readme)


def _lisbon_id(kb: RagkbClient) -> str:
    return next(d.id for d in kb.list_documents().documents if d.path == "offices/lisbon.pdf")


def test_client_search_documents_text_and_answer(tenants: Tenants) -> None:
    with RagkbClient(tenants.url, tenants.owner) as kb:
        first = kb.list_documents(limit=1)
        assert [d.path for d in first.documents] == ["handbook.md"]
        assert first.next_cursor is not None
        second = kb.list_documents(limit=1, cursor=first.next_cursor)
        assert [d.path for d in second.documents] == ["offices/lisbon.pdf"]
        assert second.next_cursor is None
        assert [d.path for d in kb.list_documents(path_prefix="offices").documents] == [
            "offices/lisbon.pdf"
        ]

        hits = kb.search(FACT_QUESTION, top_k=3).hits
        fact = next(h for h in hits[:2] if FACT in h.text)
        assert fact.path == "offices/lisbon.pdf"
        assert fact.page == 2

        text = kb.document_text(fact.document_id)
        assert text.text[fact.char_start : fact.char_end] == fact.text
        page_two = kb.document_text(fact.document_id, page=2)
        assert FACT in page_two.text
        assert "Rua Augusta" not in page_two.text
        cut = kb.document_text(fact.document_id, max_chars=10)
        assert len(cut.text) == 10
        assert cut.next_char_start == 10

        answer = kb.query(FACT_QUESTION)
        assert FACT in answer.answer
        assert answer.citations
        assert {(c.path, c.page) for c in answer.citations} >= {("offices/lisbon.pdf", 2)}

        events = list(kb.query_stream(FACT_QUESTION))
        kinds = [e.kind for e in events]
        assert kinds[0] == "sources"
        assert "token" in kinds
        assert kinds[-1] == "done"
        assert FACT in events[-1].data["answer"]


def test_client_errors_carry_the_reason(tenants: Tenants) -> None:
    with RagkbClient(tenants.url, tenants.owner) as kb:
        lisbon = _lisbon_id(kb)
    with RagkbClient(tenants.url, tenants.stranger) as other:
        assert other.search(FACT_QUESTION).hits == []
        assert other.list_documents().documents == []
        with pytest.raises(NotFoundError) as not_found:
            other.document_text(lisbon)
        assert not_found.value.status_code == 404
        assert not_found.value.detail == "no such document"
    with RagkbClient(tenants.url, "rkb_nothing_here") as bad, pytest.raises(AuthenticationError):
        bad.search(FACT_QUESTION)


def test_async_client_searches_and_streams(tenants: Tenants) -> None:
    async def run() -> tuple[list[str], list[str]]:
        async with AsyncRagkbClient(tenants.url, tenants.owner) as kb:
            hits = (await kb.search(FACT_QUESTION, top_k=2)).hits
            kinds = [e.kind async for e in kb.query_stream(FACT_QUESTION)]
        return [h.path for h in hits], kinds

    paths, kinds = asyncio.run(run())
    assert "offices/lisbon.pdf" in paths
    assert kinds[0] == "sources"
    assert kinds[-1] == "done"


def test_langchain_chain_answers_with_the_files_path_and_page(
    tenants: Tenants, reader_url: str
) -> None:
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough
    from langchain_openai import ChatOpenAI

    from client.langchain import RagkbRetriever

    retriever = RagkbRetriever(base_url=tenants.url, api_key=tenants.owner, top_k=2)
    documents = retriever.invoke(FACT_QUESTION)
    fact = next(d for d in documents if FACT in d.page_content)
    assert fact.metadata["path"] == "offices/lisbon.pdf"
    assert fact.metadata["page"] == 2
    assert {"document_id", "char_start", "char_end", "score"} <= set(fact.metadata)

    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer from the context only, briefly.\n\nContext:\n{context}"),
            ("human", "{question}"),
        ]
    )
    llm = ChatOpenAI(base_url=reader_url, api_key="unused", model="reader", temperature=0)

    def format_docs(docs: list[Any]) -> str:
        return "\n\n".join(
            f"[{d.metadata['path']} p.{d.metadata['page']}] {d.page_content}" for d in docs
        )

    chain = (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | prompt
        | llm
        | StrOutputParser()
    )
    assert FACT in chain.invoke(FACT_QUESTION)

    stranger = RagkbRetriever(base_url=tenants.url, api_key=tenants.stranger, top_k=2)
    assert stranger.invoke(FACT_QUESTION) == []
    assert asyncio.run(stranger.ainvoke(FACT_QUESTION)) == []


def test_llamaindex_query_engine_answers_with_the_files_path_and_page(
    tenants: Tenants, reader_url: str
) -> None:
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.llms.openai_like import OpenAILike

    from client.llamaindex import RagkbLlamaRetriever

    llm = OpenAILike(
        model="reader", api_base=reader_url, api_key="unused", is_chat_model=True, temperature=0
    )
    retriever = RagkbLlamaRetriever(tenants.url, tenants.owner, top_k=2)
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
    response = engine.query(FACT_QUESTION)
    assert FACT in str(response)
    fact = next(n for n in response.source_nodes if FACT in n.node.get_content())
    assert fact.node.metadata["path"] == "offices/lisbon.pdf"
    assert fact.node.metadata["page"] == 2

    stranger = RagkbLlamaRetriever(tenants.url, tenants.stranger, top_k=2)
    assert stranger.retrieve(FACT_QUESTION) == []


def _mcp(url: str, key: str | None, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """List the tools and make the calls through the SDK's own Streamable HTTP client."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def run() -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=600) as http,
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, *_),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = await session.list_tools()
            results = []
            for name, arguments in calls:
                result = await session.call_tool(name, arguments)
                results.append(result)
        return {"tools": tools, "results": results}

    return asyncio.run(run())


def _structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return dict(result.structured_content)
    return dict(json.loads(result.content[0].text))


def test_mcp_tools_search_read_and_list_within_the_tenant(tenants: Tenants) -> None:
    out = _mcp(
        tenants.url,
        tenants.owner,
        [
            ("search", {"query": FACT_QUESTION, "top_k": 3}),
            ("list_documents", {"limit": 1}),
        ],
    )
    names = {t.name for t in out["tools"].tools}
    assert names == {"search", "ask", "list_documents", "read_document"}
    hits = _structured(out["results"][0])["hits"]
    fact = next(h for h in hits[:2] if FACT in h["snippet"])
    assert fact["path"] == "offices/lisbon.pdf"
    assert fact["page"] == 2
    listing = _structured(out["results"][1])
    assert len(listing["documents"]) == 1
    assert listing["next_cursor"]

    read = _mcp(
        tenants.url,
        tenants.owner,
        [("read_document", {"document_id": fact["document_id"], "page": 2})],
    )
    assert FACT in _structured(read["results"][0])["text"]

    other = _mcp(tenants.url, tenants.stranger, [("search", {"query": FACT_QUESTION})])
    assert _structured(other["results"][0])["hits"] == []


def test_mcp_refuses_without_a_key_and_honours_scopes(tenants: Tenants) -> None:
    response = httpx.post(
        f"{tenants.url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 401
    out = _mcp(
        tenants.url,
        tenants.query_only,
        [("search", {"query": FACT_QUESTION}), ("list_documents", {})],
    )
    assert not out["results"][0].is_error
    refused = out["results"][1]
    assert refused.is_error
    assert "403" in refused.content[0].text
    assert "read" in refused.content[0].text


def test_mcp_ask_answers_with_verified_citations(tenants: Tenants) -> None:
    out = _mcp(tenants.url, tenants.owner, [("ask", {"question": FACT_QUESTION})])
    answer = _structured(out["results"][0])
    assert FACT in answer["answer"]
    assert "offices/lisbon.pdf" in {c["path"] for c in answer["citations"]}
    assert answer["conversation_id"]


def test_examples_in_readme_run(tenants: Tenants, reader_url: str, tmp_path: Path) -> None:
    """The README's examples for each front, as written there, in order, in one namespace."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[
        readme.index("## Plugging in apps and agents") : readme.index("## Quality and speed")
    ]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 5
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "hr.md").write_text("# HR\n\nEmployees get 25 vacation days a year.\n")
    namespace: dict[str, Any] = {
        "BASE_URL": tenants.url,
        "API_KEY": tenants.readme,  # an empty tenant: the examples upload their own file
        "READER_URL": reader_url,
    }
    for number, code in enumerate(blocks):
        code = code.replace("./docs", str(tmp_path / "docs"))
        exec(compile(code, f"README example {number + 1}", "exec"), namespace)


def test_openai_sdk_content_parts_usage_and_streamed_usage(tenants: Tenants) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{tenants.url}/v1", api_key=tenants.owner)
    completion = client.chat.completions.create(
        model="ragkb",
        messages=[
            # The caller's instructions reach the reader after ragkb's rules and leave the
            # answer grounded and cited.
            {"role": "system", "content": "You are helpful. Answer in one short sentence."},
            {"role": "user", "content": [{"type": "text", "text": FACT_QUESTION}]},
        ],
        temperature=0,
        max_completion_tokens=200,
    )
    assert FACT in (completion.choices[0].message.content or "")
    citations = completion.model_extra["citations"]  # type: ignore[index]
    assert ("offices/lisbon.pdf", 2) in {(c["path"], c["page"]) for c in citations}
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    chunks = list(
        client.chat.completions.create(
            model="ragkb",
            messages=[{"role": "user", "content": FACT_QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert FACT in text
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert client.models.retrieve("ragkb").id == "ragkb"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_openai_fields_ragkb_cannot_honour_are_refused_by_name(tenants: Tenants) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{tenants.url}/v1", api_key=tenants.owner, max_retries=0)
    question = [{"role": "user", "content": FACT_QUESTION}]
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"n": 2}, "n: only 1"),
        ({"logprobs": True}, "logprobs"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            "tools",
        ),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    ]
    for fields, named in refusals:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="ragkb", messages=question, **fields)
        assert named in str(refused.value), fields
    with pytest.raises(openai.BadRequestError) as image:
        client.chat.completions.create(
            model="ragkb",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    ],
                }
            ],
        )
    assert "messages[0].content[1].type" in str(image.value)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=question)


def test_async_openai_sdk_and_framework_chat_models_talk_to_ragkb(tenants: Tenants) -> None:
    """What LangChain's ChatOpenAI and LlamaIndex's OpenAILike send is accepted as sent."""
    import openai
    from langchain_openai import ChatOpenAI
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    async def run() -> str:
        client = openai.AsyncOpenAI(base_url=f"{tenants.url}/v1", api_key=tenants.owner)
        stream = await client.chat.completions.create(
            model="ragkb", messages=[{"role": "user", "content": FACT_QUESTION}], stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert FACT in asyncio.run(run())
    chat = ChatOpenAI(base_url=f"{tenants.url}/v1", api_key=tenants.owner, model="ragkb")
    assert FACT in str(chat.invoke(FACT_QUESTION).content)
    llm = OpenAILike(
        model="ragkb", api_base=f"{tenants.url}/v1", api_key=tenants.owner, is_chat_model=True
    )
    assert FACT in str(llm.chat([ChatMessage(role="user", content=FACT_QUESTION)]))

"""The fronts in-process, as OpenAI's SDK and ragkb's typed client meet them: what real
clients replay in a chat history is accepted, anything ragkb cannot honour or that is invalid is
a 400 whose `param` names the field (OpenAI's error object), the typed client's errors carry the
reason and `Retry-After`, and its job calls page and retry.

The reader is the echo reader (api/echo_reader.py), which answers with its whole prompt: what
reached the prompt from a history shows in the answer. The real reader's answers, streaming, the
framework retrievers and chat models and the MCP client are in test_fronts.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from client import AsyncRagkbClient, ConflictError, RagkbClient, RateLimitError
from core.embedding import LocalEmbedder
from core.settings import Settings
from core.tenancy import create_tenant, issue_api_key
from tests.apihelpers import auth, echo_runtime, wait_for_job

QUESTION = "What is the door code of the Lisbon office?"
USER = {"role": "user", "content": QUESTION}


@dataclass
class Front:
    client: TestClient
    key: str
    limited_key: str  # a tenant of 3 queries a minute

    def openai(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url="http://testserver/v1",
            api_key=key or self.key,
            http_client=self.client,
            max_retries=0,
        )


@pytest.fixture
def front(settings: Settings, embedder: LocalEmbedder) -> Iterator[Front]:
    settings.limits.query_burst = 1_000
    settings.limits.queries_per_minute = 1_000
    with echo_runtime(settings, embedder) as runtime:
        with runtime.session_factory() as session:
            key = issue_api_key(session, tenant=create_tenant(session, name="acme")).plaintext
            slow = create_tenant(session, name="slow")
            slow.queries_per_minute, slow.query_burst = 3, 3
            limited_key = issue_api_key(session, tenant=slow).plaintext
            session.commit()
        with TestClient(create_app(settings, runtime)) as client:
            doc = b"# Lisbon\n\nThe door code of the Lisbon office is 4471.\n"
            job = client.post(
                "/v1/ingest/jobs", headers=auth(key), files=[("files", ("lisbon.md", doc))]
            ).json()
            assert wait_for_job(client, job["id"], key)["progress"]["done"] == 1
            yield Front(client, key, limited_key)


# (extra fields or messages, the `param` the 400 names)
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"temperature": 3}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"n": 0}, "n"),
    ({"n": 2, "stream": True}, "n"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"max_tokens": 100_000}, "max_tokens"),
    ({"max_completion_tokens": 100_000}, "max_completion_tokens"),
    ({"metadata": {"team": "hr"}}, "metadata"),
    ({"store": True}, "store"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"reasoning_effort": "low"}, "reasoning_effort"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    (
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "4471"},
                USER,
            ]
        },
        "messages[1].tool_calls",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    ],
                }
            ]
        },
        "messages[0].content[1].type",
    ),
    ({"messages": [{"role": "robot", "content": QUESTION}]}, "messages[0].role"),
    ({"messages": [{"role": "system", "content": "Be brief."}]}, "messages"),
]


def test_invalid_and_unsupported_fields_are_400s_naming_the_param(front: Front) -> None:
    client = front.openai()
    for fields, param in REFUSED:
        request: dict[str, Any] = {"model": "ragkb", "messages": [USER], **fields}
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(**request)
        assert refused.value.status_code == 400, fields
        assert refused.value.param == param, (fields, refused.value.body)
        assert refused.value.type == "invalid_request_error"
        assert param in refused.value.message
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=[USER])
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-4o")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError) as no_key:
        front.openai("rkb_nothing_here").models.list()
    assert no_key.value.code == "invalid_api_key"


def test_histories_that_clients_replay_are_accepted(front: Front) -> None:
    """What chat UIs and the SDK send back: developer messages, names, null fields of an
    assistant message, content as parts, an assistant's refusal part (its text is history)."""
    completion = front.openai().chat.completions.create(
        model="ragkb",
        messages=[
            {"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": "Who may enter the Lisbon office?", "name": "ann"},
            {
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": "I cannot say who may enter."}],
                "tool_calls": None,
                "function_call": None,
                "audio": None,
            },
            {"role": "user", "content": [{"type": "text", "text": "And its door code?"}]},
        ],
        stop="NEVER-SEEN",
        seed=7,
        user="ann",
        parallel_tool_calls=False,
        modalities=["text"],
        response_format={"type": "text"},
    )
    content = completion.choices[0].message.content or ""
    # The echo reader shows its prompt: the refusal reached the history the rewrite read.
    assert "I cannot say who may enter." in content
    assert "4471" in content
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_client_errors_carry_retry_after_on_429(front: Front) -> None:
    """The tenant's bucket (3 queries) runs dry: the sync and async clients and the OpenAI SDK
    each get a 429 with the reason and the seconds to wait."""
    # Not closed: the client closes the http client it is given, and this one is the app's.
    kb = RagkbClient("http://testserver", front.limited_key, http_client=front.client)
    for _ in range(3):
        kb.search(QUESTION)
    with pytest.raises(RateLimitError) as limited:
        kb.search(QUESTION)
    assert limited.value.status_code == 429
    assert "rate limit" in str(limited.value.detail)
    assert limited.value.retry_after_s is not None
    assert limited.value.retry_after_s > 0

    async def stream() -> RateLimitError:
        transport = httpx.ASGITransport(app=front.client.app)
        async with (
            httpx.AsyncClient(transport=transport) as http,
            AsyncRagkbClient("http://testserver", front.limited_key, http_client=http) as kb,
        ):
            with pytest.raises(RateLimitError) as refused:
                async for _ in kb.query_stream(QUESTION):
                    pass
            return refused.value

    streamed = asyncio.run(stream())
    assert streamed.retry_after_s is not None
    assert "rate limit" in str(streamed.detail)

    with pytest.raises(openai.RateLimitError) as sdk:
        front.openai(front.limited_key).chat.completions.create(model="ragkb", messages=[USER])
    assert sdk.value.type == "rate_limit_error"
    assert float(sdk.value.response.headers["retry-after"]) > 0


def test_client_lists_and_retries_jobs(front: Front) -> None:
    kb = RagkbClient("http://testserver", front.key, http_client=front.client)
    second = kb.upload([("notes.md", b"# Notes\n\nNothing here.\n")])
    kb.wait_for_job(second.id, timeout_s=120)
    first_page = kb.list_jobs(limit=1)
    assert [j.id for j in first_page.jobs] == [second.id]
    assert first_page.next_cursor is not None
    rest = kb.list_jobs(cursor=first_page.next_cursor)
    assert len(rest.jobs) == 1
    assert rest.next_cursor is None
    with pytest.raises(ConflictError) as nothing:
        kb.retry_job(second.id)
    assert nothing.value.status_code == 409
    assert "failed" in str(nothing.value.detail)


def _mcp(front: Front, headers: dict[str, str], calls: list[tuple[str, dict[str, Any]]]) -> Any:
    """The tools listed and these calls made through the MCP SDK's own client."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def run() -> tuple[Any, list[Any]]:
        transport = httpx2.ASGITransport(app=front.client.app)
        async with (
            httpx2.AsyncClient(transport=transport, headers=headers, timeout=60) as http,
            streamable_http_client("http://testserver/mcp", http_client=http) as (read, write, *_),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = await session.list_tools()
            return tools, [await session.call_tool(name, args) for name, args in calls]

    return asyncio.run(run())


def _out(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return dict(result.structured_content)


def _upload_hr_salaries(front: Front) -> None:
    """hr/salaries.md, readable by group:hr only."""
    hr = b"# Salaries\n\nThe salary band of a senior engineer is band 9.\n"
    job = front.client.post(
        "/v1/ingest/jobs",
        headers=auth(front.key),
        files=[("files", ("hr/salaries.md", hr))],
        data={"principals": json.dumps(["group:hr"])},
    ).json()
    wait_for_job(front.client, job["id"], front.key)


def test_mcp_principals_header_and_reads_past_the_end(front: Front) -> None:
    _upload_hr_salaries(front)
    search = ("search", {"query": "salary band of a senior engineer", "top_k": 5})
    bearer = f"Bearer {front.key}"
    tools, (hr_hits,) = _mcp(
        front, {"Authorization": bearer, "X-Ragkb-Principals": '["group:hr"]'}, [search]
    )
    assert {t.name for t in tools.tools} == {"search", "ask", "list_documents", "read_document"}
    found = next(h for h in _out(hr_hits)["hits"] if h["path"] == "hr/salaries.md")
    assert "band 9" in found["snippet"]
    # Comma-separated works as well; another group sees neither hit nor listing.
    _, (eng_hits, eng_list) = _mcp(
        front,
        {"Authorization": bearer, "X-Ragkb-Principals": "group:eng, user:bob"},
        [search, ("list_documents", {})],
    )
    assert "hr/salaries.md" not in {h["path"] for h in _out(eng_hits)["hits"]}
    assert [d["path"] for d in _out(eng_list)["documents"]] == ["lisbon.md"]

    document = found["document_id"]
    _, (past, cut, backwards) = _mcp(
        front,
        {"Authorization": bearer, "X-Ragkb-Principals": "group:hr"},
        [
            ("read_document", {"document_id": document, "char_start": 10_000}),
            ("read_document", {"document_id": document, "max_chars": 8}),
            ("read_document", {"document_id": document, "char_start": 9, "char_end": 3}),
        ],
    )
    end = _out(past)
    assert end["text"] == ""
    assert end["next_char_start"] is None
    assert end["char_start"] == end["total_chars"]
    assert _out(cut)["text"] == "Salaries"
    assert _out(cut)["next_char_start"] == 8
    assert backwards.is_error
    assert "char_end is before char_start" in backwards.content[0].text


@pytest.fixture
def served(front: Front) -> Iterator[str]:
    """The same app (its lifespan already run by the test client) served over HTTP, for the
    framework retrievers, which make their own HTTP clients."""
    import threading

    import uvicorn

    from tests.services import free_port

    port = free_port()
    config = uvicorn.Config(front.client.app, port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        threading.Event().wait(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_retrievers_take_principals_filters_and_mode(front: Front, served: str) -> None:
    from client.langchain import RagkbRetriever
    from client.llamaindex import RagkbLlamaRetriever

    _upload_hr_salaries(front)
    query = "salary band of a senior engineer"

    def paths(**fields: Any) -> set[str]:
        chain = RagkbRetriever(base_url=served, api_key=front.key, **fields)
        documents = chain.invoke(query)
        assert {d.metadata["path"] for d in asyncio.run(chain.ainvoke(query))} == {
            d.metadata["path"] for d in documents
        }
        llama = RagkbLlamaRetriever(served, front.key, **fields)
        nodes = llama.retrieve(query)
        assert [n.node.metadata["path"] for n in nodes] == [d.metadata["path"] for d in documents]
        return {d.metadata["path"] for d in documents}

    assert paths(principals=["group:hr"]) == {"hr/salaries.md", "lisbon.md"}
    assert paths(principals=["group:eng"]) == {"lisbon.md"}
    assert paths(filters={"path_prefix": "hr"}) == {"hr/salaries.md"}
    assert paths(filters={"path_prefix": "hr"}, principals=["user:bob"]) == set()
    assert paths(mode="lexical", top_k=1) == {"hr/salaries.md"}

    hit = RagkbRetriever(base_url=served, api_key=front.key, top_k=1).invoke(query)[0]
    meta = hit.metadata
    assert meta["path"] == "hr/salaries.md"
    assert meta["section"] == "Salaries"
    text = RagkbClient(served, front.key).document_text(meta["document_id"]).text
    assert text[meta["char_start"] : meta["char_end"]] == hit.page_content
    assert {"document_id", "page", "score", "dense_score", "rerank_score", "rank"} <= set(meta)


def test_system_and_developer_messages_reach_the_reader_after_its_rules(front: Front) -> None:
    from generation.prompt import SYSTEM_PROMPT, build_messages, system_prompt

    client = front.openai()

    def prompt_tokens(*instructions: dict[str, str]) -> int:
        completion = client.chat.completions.create(
            model="ragkb", messages=[*instructions, USER], seed=1
        )
        assert completion.usage is not None
        return completion.usage.prompt_tokens

    bare = prompt_tokens()
    told = prompt_tokens(
        {"role": "system", "content": "Reply in French."},
        {"role": "developer", "content": "Keep it to one short sentence, without preamble."},
    )
    assert told > bare + 10  # both messages' words are in the reader's prompt
    messages = build_messages("q", [], datamark=False, instructions="Reply in French.")
    assert messages[0]["content"] == system_prompt(datamark=False, instructions="Reply in French.")
    assert str(messages[0]["content"]).startswith(SYSTEM_PROMPT)
    assert str(messages[0]["content"]).endswith("Reply in French.")
    assert system_prompt(datamark=False) == SYSTEM_PROMPT

    with pytest.raises(openai.APIStatusError) as too_long:
        prompt_tokens({"role": "system", "content": "Be brief. " * 500})
    assert too_long.value.status_code == 413
    assert too_long.value.param == "messages"

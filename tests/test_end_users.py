"""End users are a boundary inside a tenant: conversations stay with the end user they were
started for, reserved principals are refused at every front, keys can require principals, and
deleting (or closing) a document redacts the answers that drew on it.

The reader is the echo reader (api/echo_reader.py): it answers with its whole prompt, so what
reached the rewrite and the reader shows in every answer and stored turn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.runtime import Runtime
from client import RagkbClient
from core.embedding import LocalEmbedder
from core.models import AuditEvent, ConversationTurn
from core.principals import InvalidPrincipalError, check_principal, same_principals
from core.redaction import REDACTED_ANSWER
from core.settings import Settings
from core.tenancy import ALL_SCOPES, create_tenant, issue_api_key
from tests.apihelpers import auth, echo_runtime, wait_for_job

FINANCE = b"# Finance budget\n\nThe finance budget codename is zqfinance1x1 for next year.\n"
HR = b"# Hiring budget\n\nThe hiring budget codename is zqhr2x2 for next year.\n"
PUBLIC = b"# Office budget\n\nThe office budget codename is zqpublic3x3 for next year.\n"


@dataclass
class Stack:
    client: TestClient
    runtime: Runtime
    key: str  # ingest query read admin, principals optional
    tenant_id: str

    def upload(self, path: str, data: bytes, principals: str | None = None) -> dict[str, Any]:
        form = {"principals": principals} if principals is not None else {}
        response = self.client.post(
            "/v1/ingest/jobs", headers=auth(self.key), files=[("files", (path, data))], data=form
        )
        assert response.status_code == 202, response.text
        job = wait_for_job(self.client, response.json()["id"], self.key)
        assert job["files"][0]["state"] == "done", job
        return job["files"][0]  # type: ignore[no-any-return]

    def ask(self, question: str, **body: Any) -> Any:
        return self.client.post(
            "/v1/query", headers=auth(self.key), json={"question": question, **body}
        )

    def turns(self, conversation_id: str) -> list[str]:
        with self.runtime.session_factory() as session:
            return list(
                session.scalars(
                    select(ConversationTurn.content)
                    .where(ConversationTurn.conversation_id == conversation_id)
                    .order_by(ConversationTurn.position)
                )
            )


@pytest.fixture
def stack(settings: Settings, embedder: LocalEmbedder) -> Iterator[Stack]:
    with echo_runtime(settings, embedder) as runtime:
        with runtime.session_factory() as session:
            tenant = create_tenant(session, name="acme")
            key = issue_api_key(session, tenant=tenant, scopes=ALL_SCOPES).plaintext
            session.commit()
        with TestClient(create_app(settings, runtime)) as client:
            yield Stack(client, runtime, key, tenant.id)


def test_the_principal_rule() -> None:
    for good in ("group:finance", "user:ann@example.com", "x", "团队:财务", "a" * 200):
        assert check_principal(good) == good
    for bad in ("*", "group:*", "", " group:hr", "group:hr ", "a\x00b", "a\nb", "a" * 201):
        with pytest.raises(InvalidPrincipalError):
            check_principal(bad)
    assert same_principals(["b", "a", "a"], ["a", "b"])
    assert not same_principals(None, [])
    assert not same_principals(["a"], ["a", "b"])


def test_reserved_principals_are_refused_at_every_front(stack: Stack) -> None:
    # The reported case: `*` at upload made a document public. Every front refuses it (422,
    # naming the reason; 400 at the OpenAI front) and stores nothing.
    h = auth(stack.key)
    for principals in (["*"], ["group:finance", "*"], ["group:*"], [""], [" group:hr"]):
        chat = {"messages": [{"role": "user", "content": "hi"}], "principals": principals}
        calls: list[tuple[str, dict[str, Any]]] = [
            (
                "/v1/ingest/jobs",
                {
                    "files": [("files", ("a.md", FINANCE))],
                    "data": {"principals": json.dumps(principals)},
                },
            ),
            ("/v1/ingest/jobs", {"json": {"path": "/tmp", "principals": principals}}),
            ("/v1/search", {"json": {"query": "budget", "principals": principals}}),
            ("/v1/query", {"json": {"question": "budget?", "principals": principals}}),
            ("/v1/chat/completions", {"json": chat}),
        ]
        for url, kwargs in calls:
            response = stack.client.post(url, headers=h, **kwargs)
            # The OpenAI front answers an invalid request as OpenAI does: 400.
            expected = 400 if url == "/v1/chat/completions" else 422
            assert response.status_code == expected, (url, principals, response.text)
            if "*" in principals[-1]:
                assert "reserved" in response.text, (url, response.text)
    assert stack.client.get("/v1/documents", headers=h).json()["documents"] == []


def test_an_upload_naming_its_access_list_twice_is_refused(stack: Stack) -> None:
    # Replayed kind: with two `principals` fields the last one silently applied, so an app that
    # appended a second list opened the documents to whoever it named.
    for field, values in (
        ("principals", ('["group:finance"]', '["group:hr"]')),
        ("metadata", ('{"a": "1"}', '{"a": "2"}')),
    ):
        response = stack.client.post(
            "/v1/ingest/jobs",
            headers=auth(stack.key),
            files=[
                ("files", ("a.md", FINANCE)),
                (field, (None, values[0])),
                (field, (None, values[1])),
            ],
        )
        assert response.status_code == 422, (field, response.text)
        assert f"form field '{field}' is given more than once" in response.text
    assert stack.client.get("/v1/documents", headers=auth(stack.key)).json()["documents"] == []


def test_a_json_body_naming_a_key_twice_is_refused(stack: Stack) -> None:
    # The same kind in JSON: Python keeps the last of two keys, so `principals` given, then
    # null, was a search as no end user at all (every restricted document).
    stack.upload("finance.md", FINANCE, '["group:finance"]')
    h = {**auth(stack.key), "Content-Type": "application/json"}
    twice = '"principals": ["group:hr"], "principals": null'
    for url, body in (
        ("/v1/search", '{"query": "finance budget codename", ' + twice + "}"),
        ("/v1/query", '{"question": "finance budget codename?", ' + twice + "}"),
        (
            "/v1/chat/completions",
            '{"messages": [{"role": "user", "content": "budget?"}], ' + twice + "}",
        ),
        ("/v1/search", '{"query": "x", "filters": {"path_prefix": "a", "path_prefix": "b"}}'),
    ):
        response = stack.client.post(url, headers=h, content=body.encode())
        assert response.status_code == 400, (url, response.text)
        assert "names the key" in response.json()["detail"]
        assert "zqfinance1x1" not in response.text
    escaped = '{"query": "finance budget codename", "principals": [], "principal\\u0073": null}'
    assert stack.client.post("/v1/search", headers=h, content=escaped.encode()).status_code == 400
    once = '{"query": "finance budget codename", "principals": ["group:hr"]}'
    assert stack.client.post("/v1/search", headers=h, content=once.encode()).status_code == 200


def test_a_query_for_star_reads_no_restricted_document(stack: Stack) -> None:
    # Before the rule, a search for ["*"] matched only documents without an access list (the
    # mark is added to every query's list anyway); now it is refused outright.
    stack.upload("finance.md", FINANCE, '["group:finance"]')
    stack.upload("office.md", PUBLIC)
    response = stack.client.post(
        "/v1/search",
        headers=auth(stack.key),
        json={"query": "budget codename", "principals": ["*"]},
    )
    assert response.status_code == 422
    everyone = stack.client.post(
        "/v1/search", headers=auth(stack.key), json={"query": "budget codename", "principals": []}
    ).json()["hits"]
    assert {hit["path"] for hit in everyone} == {"office.md"}


def test_a_conversation_stays_with_its_end_user(stack: Stack) -> None:
    stack.upload("finance.md", FINANCE, '["group:finance"]')
    stack.upload("office.md", PUBLIC)
    first = stack.ask("What is the finance budget codename?", principals=["group:finance"])
    assert first.status_code == 200, first.text
    conversation_id = first.json()["conversation_id"]
    assert "zqfinance1x1" in first.json()["answer"]  # the echo reader repeats its sources

    # The reported case: another end user of the same tenant continues it. 404, exactly as for
    # an unknown id, and nothing is appended to the finance user's conversation.
    unknown = stack.ask("And next year?", conversation_id="0" * 36, principals=["group:hr"])
    assert unknown.status_code == 404
    for other in (["group:hr"], [], None, ["group:finance", "group:hr"]):
        body: dict[str, Any] = {"conversation_id": conversation_id}
        if other is not None:
            body["principals"] = other
        response = stack.ask("And next year?", **body)
        assert response.status_code == 404, (other, response.text)
        assert response.json() == unknown.json()
        assert "zqfinance1x1" not in response.text
    assert len(stack.turns(conversation_id)) == 2

    # The same end user (principals compared as a set) continues it.
    again = stack.ask(
        "And next year?", conversation_id=conversation_id, principals=["group:finance"]
    )
    assert again.status_code == 200, again.text
    assert len(stack.turns(conversation_id)) == 4


def test_a_conversation_without_an_end_user_is_not_continued_by_one(stack: Stack) -> None:
    stack.upload("finance.md", FINANCE, '["group:finance"]')
    first = stack.ask("What is the finance budget codename?")
    assert "zqfinance1x1" in first.json()["answer"]
    follow = stack.ask(
        "And next year?", conversation_id=first.json()["conversation_id"], principals=["user:x"]
    )
    assert follow.status_code == 404


def test_deleting_a_document_redacts_the_answers_that_drew_on_it(stack: Stack) -> None:
    finance = stack.upload("finance.md", FINANCE, '["group:finance"]')
    stack.upload("office.md", PUBLIC)
    who = ["group:finance", "user:ann"]
    first = stack.ask("What is the finance budget codename?", principals=who).json()
    conversation_id = first["conversation_id"]
    # The follow-up's rewrite carries the first answer's text: its answer draws on the finance
    # document too, even where its own sources do not.
    second = stack.ask(
        "What about the office budget codename?",
        conversation_id=conversation_id,
        principals=list(reversed(who)),
    ).json()
    assert "zqfinance1x1" in second["standalone_question"]
    assert any("zqfinance1x1" in turn for turn in stack.turns(conversation_id))

    response = stack.client.delete(
        f"/v1/documents/{finance['document_id']}", headers=auth(stack.key)
    )
    assert response.status_code == 204

    turns = stack.turns(conversation_id)
    assert not any("zqfinance1x1" in turn for turn in turns)
    assert turns[1] == REDACTED_ANSWER
    assert turns[3] == REDACTED_ANSWER
    assert turns[0] == "What is the finance budget codename?"  # the end user's own words stay
    with stack.runtime.session_factory() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "document.delete")
        ).one()
    assert '"turns_redacted": 2' in event.details
    # The next follow-up is rewritten from what is left: nothing of the deleted document.
    third = stack.ask("And the office?", conversation_id=conversation_id, principals=who).json()
    assert "zqfinance1x1" not in str(third)
    assert REDACTED_ANSWER not in third["standalone_question"]


def test_closing_a_document_to_an_end_user_redacts_only_their_answers(stack: Stack) -> None:
    stack.upload("finance.md", FINANCE, '["group:finance"]')
    for_finance = stack.ask("finance budget codename?", principals=["group:finance"]).json()
    for_the_app = stack.ask("finance budget codename?").json()  # no end user: reads everything
    # Re-uploaded for HR only: the finance end user may no longer read it.
    stack.upload("finance.md", FINANCE, '["group:hr"]')
    assert stack.turns(for_finance["conversation_id"])[1] == REDACTED_ANSWER
    assert "zqfinance1x1" in stack.turns(for_the_app["conversation_id"])[1]
    follow = stack.ask(
        "anything else?",
        conversation_id=for_finance["conversation_id"],
        principals=["group:finance"],
    ).json()
    assert "zqfinance1x1" not in str(follow)


def test_chat_completions_read_only_what_the_end_user_may(stack: Stack) -> None:
    stack.upload("finance.md", FINANCE, '["group:finance"]')
    stack.upload("hr.md", HR, '["group:hr"]')

    def chat(principals: list[str] | None) -> str:
        body: dict[str, Any] = {"messages": [{"role": "user", "content": "budget codename?"}]}
        if principals is not None:
            body["principals"] = principals
        response = stack.client.post("/v1/chat/completions", headers=auth(stack.key), json=body)
        assert response.status_code == 200, response.text
        return response.text

    hr = chat(["group:hr"])
    assert "zqhr2x2" in hr
    assert "zqfinance1x1" not in hr
    assert "zqfinance1x1" not in chat([])
    everything = chat(None)
    assert "zqhr2x2" in everything
    assert "zqfinance1x1" in everything


def test_a_key_that_requires_principals_fails_closed(stack: Stack) -> None:
    stack.upload("finance.md", FINANCE, '["group:finance"]')
    created = stack.client.post(
        "/v1/admin/keys",
        headers=auth(stack.key),
        json={"name": "app", "scopes": ["query"], "require_principals": True},
    )
    assert created.status_code == 201, created.text
    assert created.json()["require_principals"] is True
    strict = created.json()["key"]
    calls = [
        ("/v1/search", {"query": "finance budget codename"}),
        ("/v1/query", {"question": "finance budget codename?"}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "finance budget?"}]}),
    ]
    for url, body in calls:
        response = stack.client.post(url, headers=auth(strict), json=body)
        assert response.status_code == 400, (url, response.text)
        assert "requires the end user's principals" in response.json()["detail"]
        assert "zqfinance1x1" not in response.text
        given = stack.client.post(url, headers=auth(strict), json={**body, "principals": []})
        assert given.status_code == 200, (url, given.text)
        assert "zqfinance1x1" not in given.text


def _mcp_tool(
    stack: Stack, key: str, tool: str, arguments: dict[str, Any], **headers: str
) -> dict[str, Any]:
    """One MCP tool call as an agent's client sends it (stateless JSON-RPC over HTTP)."""
    call = {"name": tool, "arguments": arguments}
    response = stack.client.post(
        "/mcp",
        headers={**auth(key), "Accept": "application/json, text/event-stream", **headers},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call},
    )
    assert response.status_code == 200, response.text
    return response.json()["result"]  # type: ignore[no-any-return]


def test_a_key_that_requires_principals_fails_closed_on_document_reads(stack: Stack) -> None:
    # Replayed kind: the fail-closed rule held for search, query and chat, but a key with the
    # `read` scope listed and read restricted documents (REST, and the MCP tools through it).
    finance = stack.upload("finance.md", FINANCE, '["group:finance"]')
    created = stack.client.post(
        "/v1/admin/keys",
        headers=auth(stack.key),
        json={"name": "app", "scopes": ["query", "read"], "require_principals": True},
    )
    strict = created.json()["key"]
    document = f"/v1/documents/{finance['document_id']}"
    for url in ("/v1/documents", document, f"{document}/text", f"{document}/chunks"):
        response = stack.client.get(url, headers=auth(strict))
        assert response.status_code == 400, (url, response.text)
        assert "requires the end user's principals" in response.json()["detail"]
        assert "finance.md" not in response.text
        given = stack.client.get(url, headers=auth(strict), params={"principals": "group:hr"})
        assert given.status_code == (200 if url == "/v1/documents" else 404), (url, given.text)
        assert "finance.md" not in given.text
    assert stack.client.get(f"{document}/file", headers=auth(strict)).status_code == 400
    finance_user = {"principals": "group:finance"}
    read = stack.client.get(f"{document}/text", headers=auth(strict), params=finance_user)
    assert "zqfinance1x1" in read.json()["text"]
    for tool, arguments in (
        ("list_documents", {}),
        ("read_document", {"document_id": finance["document_id"]}),
        ("search", {"query": "finance budget codename"}),
        ("ask", {"question": "finance budget codename?"}),
    ):
        result = _mcp_tool(stack, strict, tool, arguments)
        assert result["isError"] is True, (tool, result)
        assert "requires the end user's principals" in str(result), (tool, result)
        assert "finance.md" not in str(result)
        assert "zqfinance1x1" not in str(result)


def test_a_key_that_requires_principals_sees_job_files_only_when_it_ingests(stack: Stack) -> None:
    # Replayed kind: a job's files name the paths of restricted documents.
    stack.upload("finance/layoffs.md", FINANCE, '["group:finance"]')

    def key(scopes: list[str]) -> str:
        body = {"name": "app", "scopes": scopes, "require_principals": True}
        created = stack.client.post("/v1/admin/keys", headers=auth(stack.key), json=body)
        return str(created.json()["key"])

    reader, uploader = key(["query", "read"]), key(["ingest", "read"])
    jobs = stack.client.get("/v1/ingest/jobs", headers=auth(reader))
    assert jobs.status_code == 200
    assert "layoffs" not in jobs.text
    job = f"/v1/ingest/jobs/{jobs.json()['jobs'][0]['id']}"
    refused = stack.client.get(job, headers=auth(reader))
    assert refused.status_code == 400
    assert "layoffs" not in refused.text
    progress = stack.client.get(job, headers=auth(reader), params={"include_files": "false"})
    assert progress.status_code == 200
    assert "layoffs" not in progress.text
    assert "finance/layoffs.md" in stack.client.get(job, headers=auth(uploader)).text


def test_the_mcp_principals_header_twice_is_refused(stack: Stack) -> None:
    stack.upload("finance.md", FINANCE, '["group:finance"]')
    call = {"name": "search", "arguments": {"query": "finance budget codename"}}
    response = stack.client.post(
        "/mcp",
        headers=[
            *auth(stack.key).items(), ("Accept", "application/json, text/event-stream"),
            ("X-Ragkb-Principals", "group:finance"), ("X-Ragkb-Principals", ""),
        ],
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call},
    )  # fmt: skip
    assert response.status_code == 400
    assert "sent 2 times" in response.json()["detail"]
    assert "zqfinance1x1" not in response.text


def test_an_empty_principals_header_is_an_end_user_in_no_group_at_the_mcp_front(
    stack: Stack,
) -> None:
    # Replayed kind: a present but empty X-Ragkb-Principals (an app's end user in no group,
    # comma-separated) was read as "no end user", who reads every restricted document.
    finance = stack.upload("finance.md", FINANCE, '["group:finance"]')
    stack.upload("office.md", PUBLIC)
    for empty in ("", "  ", " , "):
        header = {"X-Ragkb-Principals": empty}
        listed = _mcp_tool(stack, stack.key, "list_documents", {}, **header)
        assert [d["path"] for d in listed["structuredContent"]["documents"]] == ["office.md"]
        found = _mcp_tool(stack, stack.key, "search", {"query": "budget codename"}, **header)
        assert "zqfinance1x1" not in str(found)
        assert "zqpublic3x3" in str(found)
        read = _mcp_tool(
            stack, stack.key, "read_document", {"document_id": finance["document_id"]}, **header
        )
        assert read["isError"] is True
        assert "zqfinance1x1" not in str(read)
    # Without the header the caller is the app itself, as on every other front.
    everything = _mcp_tool(stack, stack.key, "list_documents", {})
    assert len(everything["structuredContent"]["documents"]) == 2
    # The REST document routes (and the typed client, which the MCP tools use) say "an end user
    # in no group" with one empty `principals=`: leaving it out meant every document.
    no_group = stack.client.get("/v1/documents", headers=auth(stack.key), params="principals=")
    assert [d["path"] for d in no_group.json()["documents"]] == ["office.md"]
    text = f"/v1/documents/{finance['document_id']}/text"
    assert stack.client.get(text, headers=auth(stack.key), params="principals=").status_code == 404
    kb = RagkbClient("http://testserver", stack.key, http_client=stack.client)  # not closed:
    assert [d.path for d in kb.list_documents(principals=[]).documents] == ["office.md"]
    assert len(kb.list_documents().documents) == 2  # the fixture's client is shared


def test_the_tenant_default_applies_to_keys_without_their_own_setting(stack: Stack) -> None:
    def key(require: bool | None) -> str:
        body = {"scopes": ["query"], "require_principals": require}
        created = stack.client.post("/v1/admin/keys", headers=auth(stack.key), json=body)
        return str(created.json()["key"])

    follows, never = key(None), key(False)
    search = {"query": "budget"}
    assert stack.client.post("/v1/search", headers=auth(follows), json=search).status_code == 200
    changed = stack.client.put(
        "/v1/admin/tenant/settings", headers=auth(stack.key), json={"require_principals": True}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["require_principals"] is True
    assert stack.client.post("/v1/search", headers=auth(follows), json=search).status_code == 400
    assert stack.client.post("/v1/search", headers=auth(never), json=search).status_code == 200
    listed = {
        k["key_prefix"]: k["requires_principals"]
        for k in stack.client.get("/v1/admin/keys", headers=auth(stack.key)).json()["keys"]
    }
    assert listed[follows.split("_")[1]] is True
    assert listed[never.split("_")[1]] is False


def test_the_cli_sets_the_key_and_tenant_settings(
    stack: Stack, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from api.cli import app as cli
    from core.settings import get_settings

    monkeypatch.setenv("RAGKB_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("RAGKB_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        run = CliRunner().invoke
        made = run(cli, ["key", "create", "--tenant", "acme", "--require-principals"])
        assert made.exit_code == 0, made.output
        strict = made.stdout.strip().splitlines()[-1]
        follows = run(cli, ["key", "create", "--tenant", "acme"]).stdout.strip().splitlines()[-1]

        def search(key: str) -> int:
            response = stack.client.post("/v1/search", headers=auth(key), json={"query": "x"})
            return int(response.status_code)

        assert search(strict) == 400
        assert search(follows) == 200
        changed = run(cli, ["tenant", "settings", "acme", "--require-principals"])
        assert changed.exit_code == 0, changed.output
        stack.runtime.key_cache.clear()  # another process changed it: this one's cache expires
        assert search(follows) == 400
        listed = run(cli, ["key", "list", "--tenant", "acme"])
        assert listed.stdout.count("\trequired") == 3  # the fixture's key follows the tenant too
    finally:
        get_settings.cache_clear()

"""End users inside a tenant, checked from the outside through the HTTP API.

`EndUsers` extends an isolation `World` (api/eval_isolation.py) with the answer paths: questions,
follow-ups and chat completions for random end users (principals), answered by the echo reader
(api/echo_reader.py), which repeats its whole prompt, so every response shows what reached the
rewrite and the reader. A leak is any of:

- a response (answer, standalone question, sources, citations; a chat completion's content and
  citations) holding a marker its caller may not read now: another tenant's, a deleted
  document's, or one whose access list excludes the caller's principals (markers the caller sent
  itself, in a question or a chat history, do not count);
- a conversation continued by another end user (other principals, compared as a set) that
  answers instead of 404;
- a stored conversation turn holding a marker its conversation's end user may not read now.

Used by tests/test_isolation.py and bench/isolation.py.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.eval_isolation import WORDS, World
from core.models import Conversation, ConversationTurn, Tenant

MARKER = re.compile(r"zq\d+x\d+")
# Each exchange's echoed answer holds the history before it: a few exchanges bound its growth.
MAX_EXCHANGES = 3


@dataclass
class StartedConversation:
    tenant: str
    principals: list[str] | None
    id: str
    exchanges: list[tuple[str, str]] = field(default_factory=list)  # (question, answer)


@dataclass
class EndUsers:
    world: World
    session_factory: Callable[[], Session]
    conversations: list[StartedConversation] = field(default_factory=list)
    questions: int = 0  # /v1/query and chat completions
    refused_continuations: int = 0  # another end user's conversation: 404, as it must be
    follow_ups: int = 0
    document_reads: int = 0  # the document routes and MCP document tools
    turns_checked: int = 0
    # Markers of readable documents seen in echoed answers: proof that the echo reached the check.
    echoed_markers: int = 0

    def _headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.keys[tenant]}"}

    def ask(
        self,
        tenant: str,
        principals: list[str] | None,
        rng: random.Random,
        *,
        follow_up: bool = False,
        as_owner: bool = False,
        stream: bool = False,
    ) -> None:
        """`POST /v1/query` as an end user; with `follow_up`, continue a random conversation of
        the tenant (another end user's must be a 404), as the end user who started it when
        `as_owner`."""
        self.questions += 1
        self.world.queries += 1
        question = " ".join(rng.sample(WORDS, 2)) + "?"
        ours = [
            c for c in self.conversations
            if c.tenant == tenant and len(c.exchanges) < MAX_EXCHANGES
        ]  # fmt: skip
        conversation = rng.choice(ours) if follow_up and ours else None
        if conversation is not None and as_owner:
            owner = conversation.principals  # in another order: compared as a set
            principals = None if owner is None else rng.sample(owner, len(owner))
        body: dict[str, Any] = {"question": question, "top_k": 4, "stream": stream}
        if principals is not None:
            body["principals"] = principals
        if conversation is not None:
            body["conversation_id"] = conversation.id
        response = self.world.client.post("/v1/query", headers=self._headers(tenant), json=body)
        if conversation is not None and not _same(conversation.principals, principals):
            if response.status_code == 404:
                self.refused_continuations += 1
            else:
                self.world.leaks.append(
                    f"{principals} of {tenant} continued {conversation.principals}'s conversation"
                    f" ({response.status_code})"
                )
            return
        if response.status_code != 200:
            raise AssertionError(f"query failed: {response.status_code} {response.text[:300]}")
        result = _done_event(response.text) if stream else response.json()
        where = f"{tenant} {principals} /v1/query"
        for name in ("answer", "standalone_question"):
            self._check_text(tenant, principals, result[name], {question}, f"{where} {name}")
        for source in result["sources"]:
            self.world._check_hit(tenant, principals, source, self._owners())
        for citation in result["citations"]:
            self._check_text(tenant, principals, citation["quote"], set(), f"{where} citation")
        if conversation is None:
            conversation = StartedConversation(tenant, principals, result["conversation_id"])
            self.conversations.append(conversation)
        else:
            self.follow_ups += 1
        conversation.exchanges.append((question, result["answer"]))

    def chat(self, tenant: str, principals: list[str] | None, rng: random.Random) -> None:
        """`POST /v1/chat/completions` as an end user, with the history of one of the same end
        user's conversations (what an app would send back)."""
        self.questions += 1
        self.world.queries += 1
        question = " ".join(rng.sample(WORDS, 2)) + "?"
        mine = [
            c
            for c in self.conversations
            if c.tenant == tenant and _same(c.principals, principals) and c.exchanges
        ]
        messages: list[dict[str, str]] = []
        if mine:
            for asked, answered in rng.choice(mine).exchanges[-2:]:
                messages += [
                    {"role": "user", "content": asked},
                    {"role": "assistant", "content": answered},
                ]
        messages.append({"role": "user", "content": question})
        body: dict[str, Any] = {"model": "ragkb", "messages": messages}
        if principals is not None:
            body["principals"] = principals
        response = self.world.client.post(
            "/v1/chat/completions", headers=self._headers(tenant), json=body
        )
        if response.status_code != 200:
            raise AssertionError(f"chat failed: {response.status_code} {response.text[:300]}")
        result = response.json()
        sent = {m["content"] for m in messages}
        where = f"{tenant} {principals} chat"
        content = result["choices"][0]["message"]["content"]
        self._check_text(tenant, principals, content, sent, where)
        for citation in result["citations"]:
            self._check_text(tenant, principals, citation["quote"], sent, f"{where} citation")

    def read(self, tenant: str, principals: list[str] | None, rng: random.Random) -> None:
        """The document routes and the MCP document tools as an end user (`[]`: one in no group,
        `principals=` once in a query string, an empty `X-Ragkb-Principals` header): nothing
        listed or read that the end user may not read now."""
        self.document_reads += 1
        params: list[tuple[str, str]] = []
        if principals is not None:
            params = [("principals", p) for p in principals] or [("principals", "")]
        headers = self._headers(tenant)
        where = f"{tenant} {principals} /v1/documents"
        listed = self.world.client.get("/v1/documents", headers=headers, params=params)
        if listed.status_code != 200:
            raise AssertionError(f"list failed: {listed.status_code} {listed.text[:300]}")
        for row in listed.json()["documents"]:
            document = self.world.documents.get((tenant, row["path"]))
            marker = document.marker if document is not None else ""
            reason = self._unreadable(tenant, principals, marker) if document else "deleted"
            if reason is not None:
                self.world.leaks.append(f"{where} listed {row['path']} ({reason})")
        mine = [d for d in self.world.documents.values() if d.tenant == tenant]
        if not mine:
            return
        target = rng.choice(mine).document_id
        text = self.world.client.get(f"/v1/documents/{target}/text", headers=headers, params=params)
        if text.status_code == 200:
            self._check_text(tenant, principals, text.json()["text"], set(), f"{where} text")
        elif text.status_code != 404:
            raise AssertionError(f"read failed: {text.status_code} {text.text[:300]}")
        mcp_headers = {**headers, "Accept": "application/json, text/event-stream"}
        if principals is not None:
            mcp_headers["X-Ragkb-Principals"] = ", ".join(principals)
        call = {"name": "read_document", "arguments": {"document_id": target}}
        tool = self.world.client.post(
            "/mcp",
            headers=mcp_headers,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call},
        )
        if tool.status_code != 200:
            raise AssertionError(f"MCP failed: {tool.status_code} {tool.text[:300]}")
        self._check_text(tenant, principals, tool.text, set(), f"{tenant} {principals} MCP read")

    def check_stored_turns(self) -> None:
        """Every stored turn holds only markers its conversation's end user may read now."""
        with self.session_factory() as session:
            rows = session.execute(
                select(Tenant.name, Conversation.principals, ConversationTurn.content)
                .join(Conversation, Conversation.id == ConversationTurn.conversation_id)
                .join(Tenant, Tenant.id == Conversation.tenant_id)
            ).all()
        for tenant, principals, content in rows:
            self.turns_checked += 1
            self._check_text(tenant, principals, content, set(), f"stored turn of {tenant}")

    def _owners(self) -> dict[str, Any]:
        return {d.marker: d for d in self.world.documents.values()}

    def _check_text(
        self,
        tenant: str,
        principals: list[str] | None,
        text: str,
        sent: Iterable[str],
        where: str,
    ) -> None:
        """Every marker in `text` (but those in what the caller sent) must belong to a document
        of `tenant` that exists now and that `principals` may read."""
        own = {m for s in sent for m in MARKER.findall(s)}
        for marker in set(MARKER.findall(text)) - own:
            reason = self._unreadable(tenant, principals, marker)
            if reason is not None:
                self.world.leaks.append(f"{where}: {marker} ({reason})")
            else:
                self.echoed_markers += 1

    def _unreadable(self, tenant: str, principals: list[str] | None, marker: str) -> str | None:
        owner = self.world.issued.get(marker)
        if owner is None:
            return "a marker never written"
        owner_tenant, path = owner
        if owner_tenant != tenant:
            return f"{owner_tenant}'s {path}"
        document = self.world.documents.get((tenant, path))
        if document is None:
            return f"deleted {path}"
        if (
            principals is not None
            and document.principals is not None
            and not set(principals) & set(document.principals)
        ):
            return f"{path} is now for {document.principals}"
        return None


def _same(a: list[str] | None, b: list[str] | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and set(a) == set(b))


def _done_event(stream: str) -> dict[str, Any]:
    """The `done` event's data of a `/v1/query` SSE stream."""
    for block in stream.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines.get("event") == "done":
            result: dict[str, Any] = json.loads(lines["data"])
            return result
        if lines.get("event") == "error":
            raise AssertionError(f"stream failed: {lines.get('data')}")
    raise AssertionError("the stream had no done event")

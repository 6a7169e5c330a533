"""The MCP front: ragkb as tools for agents, over stateless Streamable HTTP at `/mcp`.

A thin adapter like every front: each tool calls the public `/v1` API in-process (the typed
client over an ASGI transport to this same app) with the caller's own API key and principals,
so auth, scopes, rate limits, access lists, audit and load shedding are the REST routes' own,
done once. The key comes as `Authorization: Bearer <key>` on the MCP request (refused with 401
before any MCP message is read when missing or unknown); the end user's principals come in the
`X-Ragkb-Principals` header (a JSON list, or comma-separated; present but empty: an end user in
no group), as `principals` in `/v1/search`.

Every tool's output is bounded (agents have small contexts; peers' users report single tool
calls of 150k tokens): search snippets are cut, documents are read a page or a char range at a
time, and each output says how to get more.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from api.auth import AuthenticationError, authenticate, bearer_key
from client.aio import AsyncRagkbClient
from client.errors import APIError

PRINCIPALS_HEADER = "x-ragkb-principals"
MCP_PATH = "/mcp"
# Bounds on what one tool call returns, in characters (~4 per token): a search of 20 hits of
# 600 characters is ~3k tokens; a document read is at most ~5k tokens.
SNIPPET_CHARS = 600
QUOTE_CHARS = 400
MAX_TOP_K = 20
MAX_READ_CHARS = 20_000
MAX_LIST = 100

INSTRUCTIONS = """ragkb is the company's knowledge base. Use `search` to find passages about a
topic (returns paths, pages and snippets), `ask` for an answer with verified citations,
`list_documents` to browse what exists, and `read_document` to read a document (or one page or
char range of it) in full. Cite documents by path and page."""

_READ_ONLY = ToolAnnotations(readOnlyHint=True, openWorldHint=False)


_HEADER_KEY = PRINCIPALS_HEADER.lower()


def _principals(headers: Any) -> list[str] | None:
    """The end user's principals from the header; None only when the header is absent. A
    present but empty header is an end user in no group (`[]`), never "no end user", which
    would read every restricted document."""
    raw = headers.get(PRINCIPALS_HEADER) if headers is not None else None
    if raw is None:
        return None
    raw = raw.strip()
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ToolError(f"{PRINCIPALS_HEADER}: not a JSON list ({exc})") from exc
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise ToolError(f"{PRINCIPALS_HEADER}: a JSON list of strings, please")
        return value
    return [p.strip() for p in raw.split(",") if p.strip()]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class McpFront:
    """The MCP server and its tools, bound to one FastAPI app (whose `/v1` routes it calls)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self.server: MCPServer[Any] = MCPServer(
            name="ragkb", instructions=INSTRUCTIONS, version="0.1.0"
        )
        self._register_tools()
        self.session_manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """A session manager's task group for one lifespan of the app (a manager runs once, and
        an app object may be started again, e.g. by a second test client)."""
        # Bearer keys are not ambient credentials (no cookies), so the SDK's DNS-rebinding
        # guard (Host/Origin allow-lists) would only refuse real deployments' host names.
        manager = StreamableHTTPSessionManager(
            app=self.server._lowlevel_server,
            json_response=True,
            stateless=True,
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        async with manager.run():
            self.session_manager = manager
            try:
                yield
            finally:
                self.session_manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`/mcp`: 401 without a valid key (before any MCP message), else the MCP transport."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            await authenticate(self._app.state.runtime, bearer_key(headers.get("authorization")))
        except AuthenticationError as exc:
            response = JSONResponse(
                {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        named = [k for k, _ in scope["headers"] if k.decode("latin-1").lower() == _HEADER_KEY]
        if len(named) > 1:
            # Which of two access lists applies is unknowable: neither does (as a body's
            # repeated key or an upload's repeated `principals` field).
            detail = f"{PRINCIPALS_HEADER} sent {len(named)} times: send it once"
            await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)
            return
        if self.session_manager is None:
            await JSONResponse({"detail": "the MCP front is not running"}, status_code=503)(
                scope, receive, send
            )
            return
        await self.session_manager.handle_request(scope, receive, send)

    def _client(self, ctx: Context) -> AsyncRagkbClient:
        headers = ctx.headers or {}
        transport = httpx.ASGITransport(app=self._app)
        return AsyncRagkbClient(
            "http://ragkb.internal",
            str(headers.get("authorization", "")).partition(" ")[2].strip(),
            http_client=httpx.AsyncClient(transport=transport, timeout=600),
        )

    async def _call(
        self, ctx: Context, work: Callable[[AsyncRagkbClient], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        async with self._client(ctx) as client:
            try:
                return await work(client)
            except APIError as exc:
                retry = f" (retry after {exc.retry_after_s:g} s)" if exc.retry_after_s else ""
                raise ToolError(f"ragkb refused: {exc.status_code} {exc.detail}{retry}") from exc

    def _register_tools(self) -> None:
        server = self.server

        @server.tool(
            description="Search the knowledge base for passages relevant to `query` (hybrid "
            "keyword + semantic search). Returns up to `top_k` hits, best first, each with the "
            "document's path, page, section, a snippet and ids. Narrow with `path_prefix` (a "
            "folder) or `file_types` (e.g. ['pdf']). To read a hit in full, call read_document "
            "with its document_id and char_start/char_end.",
            annotations=_READ_ONLY,
        )
        async def search(
            query: str,
            ctx: Context,
            top_k: int = 5,
            path_prefix: str | None = None,
            file_types: list[str] | None = None,
        ) -> dict[str, Any]:
            principals = _principals(ctx.headers)
            filters = {"path_prefix": path_prefix, "file_types": file_types or []}

            async def work(client: AsyncRagkbClient) -> dict[str, Any]:
                result = await client.search(
                    query,
                    top_k=max(1, min(top_k, MAX_TOP_K)),
                    filters={k: v for k, v in filters.items() if v},
                    principals=principals,
                )
                return {
                    "hits": [
                        {
                            "rank": h.rank,
                            "path": h.path,
                            "page": h.page,
                            "section": h.section,
                            "snippet": _cut(h.text, SNIPPET_CHARS),
                            "document_id": h.document_id,
                            "char_start": h.char_start,
                            "char_end": h.char_end,
                            "score": round(h.score, 4),
                        }
                        for h in result.hits
                    ],
                    "more": f"top_k up to {MAX_TOP_K}; read_document for a hit's full text",
                }

            return await self._call(ctx, work)

        @server.tool(
            description="Answer a question from the knowledge base, with numbered citations "
            "[n] that were checked against their sources (`verified`). If the documents do not "
            "contain the answer it says so (`answered: false`) rather than guessing. Pass the "
            "returned conversation_id to ask a follow-up.",
        )
        async def ask(
            question: str,
            ctx: Context,
            conversation_id: str | None = None,
            path_prefix: str | None = None,
        ) -> dict[str, Any]:
            principals = _principals(ctx.headers)

            async def work(client: AsyncRagkbClient) -> dict[str, Any]:
                result = await client.query(
                    question,
                    filters={"path_prefix": path_prefix} if path_prefix else None,
                    principals=principals,
                    conversation_id=conversation_id,
                )
                return {
                    "answer": result.answer,
                    "answered": result.answered,
                    "verified": result.verified,
                    "citations": [
                        {
                            "number": c.number,
                            "path": c.path,
                            "page": c.page,
                            "quote": _cut(c.quote, QUOTE_CHARS),
                            "verified": c.verified,
                            "document_id": c.document_id,
                            "char_start": c.char_start,
                            "char_end": c.char_end,
                        }
                        for c in result.citations
                    ],
                    "conversation_id": result.conversation_id,
                }

            return await self._call(ctx, work)

        @server.tool(
            description="List the knowledge base's documents by path, a page at a time (at "
            f"most {MAX_LIST}). Narrow with `path_prefix` (a folder) or `path_contains`. When "
            "`next_cursor` is not null, call again with `cursor` set to it for the next page.",
            annotations=_READ_ONLY,
        )
        async def list_documents(
            ctx: Context,
            path_prefix: str | None = None,
            path_contains: str | None = None,
            cursor: str | None = None,
            limit: int = 50,
        ) -> dict[str, Any]:
            principals = _principals(ctx.headers)

            async def work(client: AsyncRagkbClient) -> dict[str, Any]:
                page = await client.list_documents(
                    limit=max(1, min(limit, MAX_LIST)),
                    cursor=cursor,
                    path_prefix=path_prefix,
                    path_contains=path_contains,
                    principals=principals,
                )
                return {
                    "documents": [
                        {
                            "document_id": d.id,
                            "path": d.path,
                            "title": d.title,
                            "chunks": d.chunk_count,
                            "updated_at": d.updated_at.isoformat(),
                        }
                        for d in page.documents
                    ],
                    "next_cursor": page.next_cursor,
                }

            return await self._call(ctx, work)

        @server.tool(
            description="Read a document's text: the whole document, one `page`, or the range "
            "[char_start, char_end) (offsets as in search hits and citations). At most "
            f"`max_chars` (≤ {MAX_READ_CHARS}) characters per call; when `next_char_start` is "
            "not null, call again with char_start set to it to read on.",
            annotations=_READ_ONLY,
        )
        async def read_document(
            document_id: str,
            ctx: Context,
            page: int | None = None,
            char_start: int = 0,
            char_end: int | None = None,
            max_chars: int = 8_000,
        ) -> dict[str, Any]:
            principals = _principals(ctx.headers)

            async def work(client: AsyncRagkbClient) -> dict[str, Any]:
                text = await client.document_text(
                    document_id,
                    char_start=char_start,
                    char_end=char_end,
                    page=page,
                    max_chars=max(1, min(max_chars, MAX_READ_CHARS)),
                    principals=principals,
                )
                return text.model_dump()

            return await self._call(ctx, work)

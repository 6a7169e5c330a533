"""The web console at `/console`: static page shells (Jinja2, autoescaped) and one script that
calls only the public `/v1` API with the key the user signed in with (kept in sessionStorage,
sent as a Bearer header). The server never sees the key on these routes and renders no tenant
data, so the pages hold nothing a document could inject."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from core.audit import AuditAction

HERE = Path(__file__).parent
# Jinja2Templates turns autoescape on for .html templates.
templates = Jinja2Templates(directory=HERE / "templates")

# Page name -> (template, title, the scope its navigation link needs).
PAGES: dict[str, tuple[str, str, str]] = {
    "documents": ("documents.html", "Documents", "read"),
    "ask": ("ask.html", "Ask", "query"),
    "search": ("search.html", "Search", "query"),
    "admin": ("admin.html", "Admin", "admin"),
    "system": ("system.html", "System", "admin"),
}

router = APIRouter(prefix="/console", include_in_schema=False)


def _page(request: Request, template: str, page: str, **context: object) -> HTMLResponse:
    return templates.TemplateResponse(request, template, {"page": page, "pages": PAGES, **context})


@router.get("", response_class=HTMLResponse)
def sign_in(request: Request) -> HTMLResponse:
    """Paste an API key; the script checks which scopes it has."""
    return _page(request, "signin.html", "signin")


@router.get("/", response_class=RedirectResponse)
def sign_in_slash() -> RedirectResponse:
    return RedirectResponse("/console")


@router.get("/documents/{document_id}", response_class=HTMLResponse)
def document_page(request: Request, document_id: str) -> HTMLResponse:
    """One document: its chunks and extracted text (the id is read by the script)."""
    return _page(request, "document.html", "document")


@router.get("/{page}", response_class=HTMLResponse)
def named_page(request: Request, page: str) -> HTMLResponse:
    found = PAGES.get(page)
    if found is None:
        return _page(request, "signin.html", "signin")
    # The audit filter offers every action there is (a fixed list, not tenant data).
    return _page(request, found[0], page, audit_actions=sorted(a.value for a in AuditAction))


def mount(app: FastAPI) -> None:
    """Add the console's pages and its static files (script and style) to the app."""
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)

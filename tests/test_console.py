"""The console's routes in-process (no browser): the pages, their CSP, and the switch."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings


def test_console_pages_are_static_shells_with_a_strict_csp(settings: Settings) -> None:
    client = TestClient(create_app(settings))  # no lifespan: the pages need no runtime
    for path in ("/console", "/console/documents", "/console/ask", "/console/search",
                 "/console/admin", "/console/system", "/console/documents/abc"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self';" in csp
        assert "frame-ancestors 'none'" in csp
        assert "<script>" not in response.text  # no inline script: the CSP would block it
    script = client.get("/console/static/console.js")
    assert script.status_code == 200
    assert "innerHTML" not in script.text
    assert client.get("/console/static/console.css").status_code == 200
    # The API keeps its own stricter policy.
    assert (
        client.get("/healthz").headers["content-security-policy"].startswith("default-src 'none'")
    )


def test_the_console_can_be_turned_off(settings: Settings) -> None:
    settings.http.console_enabled = False
    client = TestClient(create_app(settings))
    assert client.get("/console").status_code == 404
    assert client.get("/console/static/console.js").status_code == 404

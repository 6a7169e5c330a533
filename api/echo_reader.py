"""An adversarial reader for isolation checks: an OpenAI-compatible server that answers every
chat completion with its whole prompt.

A real reader leaks some random part of what reaches its prompt; this one leaks all of it, on one
line (so a rewrite's "first line" is the whole rewrite prompt, history included). Behind it,
every response (`answer`, `standalone_question`) and every stored answer turn shows exactly what
ragkb fed the rewrite and the reader, so an isolation check over responses and turns is a check
over prompts. The attack in issue 15 was found this way. Only the isolation test and
`bench/isolation.py` use it; it serves `POST /v1/chat/completions` (JSON and SSE) and nothing
else (token counts fall back to ragkb's estimate). A setup behind it uses `ECHO_CITATIONS`: an
echo is no verified answer, and a guard that replaced it with "not in the sources" would hide
the prompt from the check.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from core.settings import CitationSettings

# The guards that refuse unverified answers off (CitationSettings.unsupported_min_scores and
# unsupported_min_fused_scores): every echo reaches the response.
ECHO_CITATIONS = CitationSettings(unsupported_min_score=-1.0, unsupported_min_fused_score=-1e9)


def echo_text(messages: list[dict[str, Any]]) -> str:
    """The non-system messages' contents, joined on one line."""
    parts = [str(m.get("content") or "") for m in messages if m.get("role") != "system"]
    return " ".join(" ".join(parts).split())


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the base's name
        return

    def do_POST(self) -> None:  # http.server's name
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        text = echo_text(body.get("messages", []))
        base = {"id": "chatcmpl-echo", "created": 0, "model": body.get("model", "echo")}
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
                chunk = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        payload = json.dumps(
            {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class EchoReader:
    """`with EchoReader() as reader:` serves on a free loopback port; `reader.base_url` ends in
    `/v1`, ready for `ReaderSettings(base_url=...)`."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> EchoReader:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

"""A cap on what unstructured's text heuristics see.

unstructured decides whether a piece of text is a title or narrative with spaCy (sentences,
words, part-of-speech tags) on the whole text, in every partitioner (HTML, DOCX, PPTX, PDF pages
through the text partitioner): ~60 ms for a 300-character paragraph on this machine, 186 s for
1 MB of HTML paragraphs. Only short text can be a title (unstructured itself refuses more than 12
words), so spaCy sees a text of at most `HEURISTIC_CHARS` characters; longer text is split into
words and sentences by regular expressions, and its verbs are looked for in its first
`HEURISTIC_CHARS` characters. Element texts are untouched: only the classification is bounded.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

HEURISTIC_CHARS = 200
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_WORD = re.compile(r"\w+|[^\w\s]")
_installed = False
_lock = threading.Lock()


def cap_heuristics() -> None:
    """Bound unstructured's classifiers (once per process; safe to call again)."""
    global _installed
    with _lock:
        if _installed:
            return
        import importlib

        # The classifiers look these names up in their own module: replacing them there bounds
        # every partitioner's classification and nothing else.
        text_type: Any = importlib.import_module("unstructured.partition.text_type")
        text_type.sent_tokenize = _bounded(text_type.sent_tokenize, _sentences)
        text_type.word_tokenize = _bounded(text_type.word_tokenize, _WORD.findall)
        spacy_pos_tag = text_type.pos_tag
        text_type.pos_tag = _bounded(
            spacy_pos_tag, lambda text: spacy_pos_tag(text[:HEURISTIC_CHARS])
        )
        _installed = True


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def _bounded(spacy: Callable[[str], Any], cheap: Callable[[str], Any]) -> Callable[[str], Any]:
    def bounded(text: str) -> Any:
        return spacy(text) if len(text) <= HEURISTIC_CHARS else cheap(text)

    return bounded

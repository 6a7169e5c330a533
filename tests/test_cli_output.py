from __future__ import annotations

from typing import Any

from api.cli import format_answer


def _citation(verified: bool, reason: str | None) -> dict[str, Any]:
    return {
        "number": 1, "path": "cups.csv", "page": None, "claim": "The Leafs won 1 Stanley Cup.",
        "quote": "Maple Leafs | TOR | 13", "verified": verified, "reason": reason,
    }  # fmt: skip


def test_ask_shows_each_quote_and_whether_it_states_the_claim() -> None:
    reason = "number 1 not in the source; the source says 13"
    lines = format_answer({
        "answer": "The Maple Leafs have won 1 Stanley Cup [1].", "answered": True,
        "verified": False, "citations": [_citation(False, reason)], "stages": ["hybrid", "verify"],
        "invalid_citation_numbers": [],
    })  # fmt: skip
    assert lines == [
        "The Maple Leafs have won 1 Stanley Cup [1].",
        "",
        "[1] cups.csv",
        "    claim: The Leafs won 1 Stanley Cup.",
        '    quote: "Maple Leafs | TOR | 13"',
        f"    NOT VERIFIED: {reason}",
        "1 of 1 citations NOT verified.",
    ]


def test_ask_says_when_it_refused() -> None:
    no_evidence = format_answer({
        "answer": "The sources do not contain the answer.", "answered": False, "verified": False,
        "citations": [], "stages": ["hybrid", "no_evidence"], "invalid_citation_numbers": [],
    })  # fmt: skip
    assert no_evidence[-1] == (
        "NOT ANSWERED: not in the sources (no passage of your documents is close enough to the "
        "question)."
    )
    reader_refused = format_answer({
        "answer": "The sources do not say.", "answered": False, "verified": False,
        "citations": [], "stages": ["hybrid", "read:qwen", "verify"],
        "invalid_citation_numbers": [],
    })  # fmt: skip
    assert reader_refused[-1] == (
        "NOT ANSWERED: not in the sources (the reader found no answer in the retrieved passages)."
    )
    unsupported = format_answer({
        "answer": "The sources do not contain the answer.", "answered": False, "verified": False,
        "citations": [], "stages": ["hybrid", "read:qwen", "unsupported"],
        "invalid_citation_numbers": [],
    })  # fmt: skip
    assert unsupported[-1] == (
        "NOT ANSWERED: not in the sources (the reader's answer is stated by none of the passages "
        "it cited)."
    )

"""The OpenAI front's stream when the answer is withdrawn after its tokens went out."""

from __future__ import annotations

import json

from api.routers.openai_compat import UNSUPPORTED_NOTICE, _chunks
from generation.answer import AnswerEvent, AnswerResult
from generation.client import DEFAULT_OPTIONS
from generation.prompt import NO_ANSWER
from retrieval.retriever import RetrievedChunk

SOURCE = RetrievedChunk(
    point_id="p", document_id="d", path="hr/vacation.md", title=None, page=None, section=None,
    char_start=0, char_end=40, text="Employees receive 25 days of paid vacation.",
    retrieval_score=0.7,
)  # fmt: skip


def streamed_text(result: AnswerResult, tokens: list[str]) -> str:
    events = [AnswerEvent("sources", [SOURCE])]
    events += [AnswerEvent("token", t) for t in tokens]
    events.append(AnswerEvent("done", result))
    content = []
    for block in _chunks(iter(events), "c", 0, False, DEFAULT_OPTIONS, 64):
        data = block.removeprefix("data: ").strip()
        if data != "[DONE]":
            for choice in json.loads(data)["choices"]:
                content.append(choice["delta"].get("content") or "")
    return "".join(content)


def result(answered: bool, stage: str) -> AnswerResult:
    return AnswerResult(
        answer="Mercury boils at 357 °C [1]." if answered else NO_ANSWER, answered=answered,
        verified=False, question="q", standalone_question="q", sources=[SOURCE], citations=[],
        invalid_citation_numbers=[], stages=["hybrid", "read:m", stage],
    )  # fmt: skip


def test_a_streamed_answer_no_source_states_is_taken_back() -> None:
    draft = ["Mercury boils ", "at 357 °C [1]."]
    withdrawn = streamed_text(result(False, "unsupported"), draft)
    assert withdrawn == f"Mercury boils at 357 °C [1].\n\n{UNSUPPORTED_NOTICE}"
    # The reader's own refusal is already the streamed text: nothing is added.
    refusal = ["The sources do not say."]
    assert streamed_text(result(False, "reader_refused"), refusal) == "The sources do not say."

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core.embedding import LocalEmbedder
from core.lexical import LexicalEncoder
from core.metrics import Metrics
from core.settings import CitationSettings, LexicalSettings, ReaderSettings, RetrievalSettings
from core.vectorstore.edge import EdgeVectorStore
from generation.answer import AnswerResult, AnswerService, TokenUsage, _Prepared
from generation.client import ChatClient
from generation.prompt import NO_ANSWER
from generation.verify import CitationVerifier, content_tokens, lexical_support
from retrieval.rerank import NoReranker
from retrieval.retriever import RetrievedChunk, Retriever

SOURCE = (
    "The Rotterdam warehouse opened in 2019. It shipped 48,200 parcels in September. "
    "Staff turnover was low."
)


def test_content_tokens_drop_stopwords_and_use_cjk_bigrams() -> None:
    assert content_tokens("The warehouse shipped 48,200 parcels") == {
        "warehouse", "shipped", "48,200", "parcels",
    }  # fmt: skip
    assert content_tokens("仓库发货") == {"仓库", "库发", "发货"}


def test_lexical_support_is_the_share_of_claim_words_found() -> None:
    assert lexical_support("shipped 48,200 parcels", SOURCE) == 1.0
    assert lexical_support("shipped 99 parcels", SOURCE) == 2 / 3


def test_supported_claim_is_verified_with_its_span(embedder: LocalEmbedder) -> None:
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.5, semantic_threshold=0.6)
    support = verifier.support("The Rotterdam warehouse shipped 48,200 parcels.", SOURCE)
    assert support.verified
    assert SOURCE[support.span_start : support.span_end] in (
        "It shipped 48,200 parcels in September.",
        "The Rotterdam warehouse opened in 2019. It shipped 48,200 parcels in September.",
    )


def test_unrelated_claim_is_not_verified(embedder: LocalEmbedder) -> None:
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.5, semantic_threshold=0.6)
    support = verifier.support("Employees receive 25 days of paid vacation per year.", SOURCE)
    assert not support.verified
    assert support.lexical < 0.5
    assert support.reason is not None
    assert support.reason.startswith("number 25 not in the source")
    assert not verifier.support("", SOURCE).verified


STANLEY_CUPS = (
    "Team | Code | Stanley Cups\nCanadiens | MTL | 24\nMaple Leafs | TOR | 13\n"
    "Red Wings | DET | 11\nPanthers | FLA | 1"
)


def test_a_wrong_number_is_not_verified_however_similar_the_row(embedder: LocalEmbedder) -> None:
    """The reported case: "1 Stanley Cup" was verified by the row that says 13."""
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.65, semantic_threshold=0.513)
    wrong = verifier.support("The Maple Leafs have won 1 Stanley Cup.", STANLEY_CUPS)
    assert not wrong.verified
    assert STANLEY_CUPS[wrong.span_start : wrong.span_end] == "Maple Leafs | TOR | 13"
    assert wrong.reason == "number 1 not in the source; the source says 13"
    right = verifier.support("The Maple Leafs have won 13 Stanley Cups.", STANLEY_CUPS)
    assert right.verified, right
    assert right.reason is None
    assert STANLEY_CUPS[right.span_start : right.span_end] == "Maple Leafs | TOR | 13"


def test_a_decimal_number_is_verified_from_the_sentence_that_states_it(
    embedder: LocalEmbedder,
) -> None:
    source = "截至2023年末，公司存货账面价值为9.82 亿元，较上年末增长12.5%。应收账款余额为3.4亿元。"
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.65, semantic_threshold=0.513)
    support = verifier.support("公司存货账面价值为9.82亿元。", source)
    assert support.verified, support
    assert source[support.span_start : support.span_end] == (
        "截至2023年末，公司存货账面价值为9.82 亿元，较上年末增长12.5%。"
    )
    wrong = verifier.support("公司存货账面价值为9.28亿元。", source)
    assert not wrong.verified
    assert wrong.reason is not None
    assert wrong.reason.startswith("number 9.28亿 not in the source")


def test_a_quote_must_hold_the_fact_not_just_the_topic(embedder: LocalEmbedder) -> None:
    source = (
        "The company has produced solar modules since 2002. Thin Film Partnership revenue grew "
        "strongly. New parents receive 8 weeks of paid leave."
    )
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.65, semantic_threshold=0.513)
    assert not verifier.support("Thin Film Partnership revenue grew 36%.", source).verified
    eight = verifier.support("New parents get eight weeks of paid leave.", source)
    assert eight.verified, eight
    assert source[eight.span_start : eight.span_end] == "New parents receive 8 weeks of paid leave."


def test_reader_output_with_no_or_nonsense_citations_is_flagged_not_failed(
    embedder: LocalEmbedder, tmp_path: Path
) -> None:
    """Whatever the reader writes, the answer comes back: unverified, never an error; with
    `refuse_unsupported` an answer no source states is "not in the sources"."""
    reader_settings = ReaderSettings()
    lexical = LexicalEncoder(LexicalSettings())
    store = EdgeVectorStore(path=tmp_path / "s", dimension=embedder.dimension, lexical=lexical)
    service = AnswerService(
        retriever=Retriever(
            store=store,
            embedder=embedder,
            lexical=lexical,
            reranker=NoReranker(),
            settings=RetrievalSettings(),
            rerank_candidates=5,
            min_score=0,
        ),
        chat_client=ChatClient(reader_settings),
        verifier=CitationVerifier(
            embedder=embedder, lexical_threshold=0.65, semantic_threshold=0.5
        ),
        count_tokens=len,
        reader_settings=reader_settings,
        metrics=Metrics(),
    )
    source = RetrievedChunk(
        point_id="p", document_id="d", path="a.md", title=None, page=None, section=None,
        char_start=100, char_end=100 + len(SOURCE), text=SOURCE, retrieval_score=0.8,
    )  # fmt: skip

    def finish(text: str, answers: AnswerService = service) -> AnswerResult:
        prepared = _Prepared(
            "q", "q", [source], ["hybrid"], {}, time.perf_counter(), TokenUsage(0, 0)
        )
        return answers._finish(prepared, text)

    uncited = finish("It shipped many parcels.")
    assert uncited.answered
    assert not uncited.verified
    assert uncited.citations == []

    nonsense = finish("It shipped 48,200 parcels [7]. Cats are mammals [0][1].")
    assert nonsense.invalid_citation_numbers == [7, 0]
    assert [c.number for c in nonsense.citations] == [1]
    assert not nonsense.citations[0].verified  # cats are not in the source
    assert nonsense.citations[0].reason is not None
    assert not nonsense.verified

    refusing = AnswerService(
        retriever=service._retriever, chat_client=service._chat, verifier=service._verifier,
        count_tokens=len, reader_settings=reader_settings, metrics=Metrics(),
        refuse_unsupported=True,
    )  # fmt: skip
    for unsupported in ("It shipped many parcels.", "Cats are mammals [1]."):
        refused = finish(unsupported, refusing)
        assert (refused.answered, refused.answer, refused.citations) == (False, NO_ANSWER, [])
        assert refused.stages == ["hybrid", f"read:{reader_settings.model}", "unsupported"]
        assert refused.sources == [source]

    good = finish("The Rotterdam warehouse shipped 48,200 parcels in September [1].")
    assert good.verified
    assert finish(
        "The Rotterdam warehouse shipped 48,200 parcels in September [1]. Cats purr [1].",
        refusing,
    ).answered  # one verified citation: the answer stands, its other claim flagged
    assert good.citations[0].reason is None
    quote = good.citations[0]
    # The claim names the warehouse (sentence 1) and the figure (sentence 2): the pair is quoted.
    assert quote.quote == SOURCE[: SOURCE.index(" Staff")]
    assert SOURCE[quote.char_start - 100 : quote.char_end - 100] == quote.quote
    store.close()


@contextmanager
def _guarded_finish(
    embedder: LocalEmbedder, tmp_path: Path, *, min_dense: float | None = None,
    min_fused: float | None = None,
) -> Iterator[Callable[..., AnswerResult]]:  # fmt: skip
    """`finish(text, *, dense, fused, stages, rerank)`: an AnswerService with the guards
    `unsupported_min_dense` / `_fused` finishing the reader's `text` over one source so scored."""
    reader_settings = ReaderSettings()
    lexical = LexicalEncoder(LexicalSettings())
    store = EdgeVectorStore(path=tmp_path / "s", dimension=embedder.dimension, lexical=lexical)
    service = AnswerService(
        retriever=Retriever(
            store=store, embedder=embedder, lexical=lexical, reranker=NoReranker(),
            settings=RetrievalSettings(), rerank_candidates=5, min_score=0,
        ),
        chat_client=ChatClient(reader_settings),
        verifier=CitationVerifier(embedder=embedder, lexical_threshold=0.65,
                                  semantic_threshold=0.5),
        count_tokens=len, reader_settings=reader_settings, metrics=Metrics(),
        unsupported_min_dense=min_dense, unsupported_min_fused=min_fused,
    )  # fmt: skip

    def finish(
        text: str, *, dense: float | None = 0.9, fused: float = 3.0,
        stages: tuple[str, ...] = ("hybrid",), rerank: float | None = None,
    ) -> AnswerResult:  # fmt: skip
        source = RetrievedChunk(
            point_id="p", document_id="d", path="a.md", title=None, page=None, section=None,
            char_start=0, char_end=len(SOURCE), text=SOURCE, retrieval_score=fused,
            dense_score=dense, rerank_score=rerank,
        )  # fmt: skip
        prepared = _Prepared(
            "q", "q", [source], list(stages), {}, time.perf_counter(), TokenUsage(0, 0)
        )
        return service._finish(prepared, text)

    try:
        yield finish
    finally:
        store.close()


UNVERIFIED = "The warehouse shipped 51,000 parcels in September [1]."
VERIFIED = "The Rotterdam warehouse shipped 48,200 parcels in September [1]."


def test_an_unverified_answer_is_refused_only_when_its_sources_are_far_from_the_question(
    embedder: LocalEmbedder, tmp_path: Path
) -> None:
    """`unsupported_min_dense`: an answer no citation verifies is kept (flagged) when a source
    is close to the question, and "not in the sources" when none is; a verified one stands."""
    # The defaults picked by bench/abstention_guard.py: e5 has one, MiniLM none.
    assert CitationSettings().unsupported_min_score_for("multilingual-e5-small") == 0.859
    assert CitationSettings().unsupported_min_score_for("all-MiniLM-L6-v2") is None
    overridden = CitationSettings(unsupported_min_score=-1)
    assert overridden.unsupported_min_score_for("multilingual-e5-small") == -1
    with _guarded_finish(embedder, tmp_path, min_dense=0.45) as finish:
        far = finish(UNVERIFIED, dense=0.44)
        assert (far.answered, far.answer, far.citations) == (False, NO_ANSWER, [])
        assert far.stages[-1] == "unsupported"
        assert not finish("It shipped many parcels.", dense=0.3).answered  # uncited, far

        near = finish(UNVERIFIED, dense=0.45)
        assert near.answered
        assert not near.verified
        assert near.citations[0].reason is not None
        # No dense score to weigh (a lexical-only search): kept, flagged.
        assert finish(UNVERIFIED, dense=None).answered
        verified = finish(VERIFIED, dense=0.1)
        assert verified.answered
        assert verified.verified


def test_an_unverified_answer_is_refused_when_its_fused_score_is_low(
    embedder: LocalEmbedder, tmp_path: Path
) -> None:
    """`unsupported_min_fused`: the best source's DBSF score of a hybrid search decides, and a
    score on another scale (a reranker's, an expanded search's, a dense-only one) does not."""
    assert CitationSettings().unsupported_min_fused_score_for("all-MiniLM-L6-v2") == 2.492
    assert CitationSettings().unsupported_min_fused_score_for("multilingual-e5-small") is None
    with _guarded_finish(embedder, tmp_path, min_fused=2.5) as finish:
        low = finish(UNVERIFIED, fused=2.4)
        assert (low.answered, low.stages[-1]) == (False, "unsupported")
        assert not finish(UNVERIFIED, fused=2.4, stages=("rewrite", "hybrid")).answered
        assert finish(UNVERIFIED, fused=2.5).answered  # at the threshold: kept, flagged
        assert finish(
            UNVERIFIED, fused=0.03, stages=("hybrid", "rerank:remote"), rerank=0.03
        ).answered
        assert finish(UNVERIFIED, fused=0.03, stages=("hybrid", "multi_query")).answered
        assert finish(UNVERIFIED, fused=0.3, stages=("dense",)).answered
        verified = finish(VERIFIED, fused=1.0)
        assert verified.answered
        assert verified.verified


GORDON = (
    "小艾瑞克·高登（Eric Gordon, Jr.），美国职业篮球运动员，现效力于NBA休士顿火箭。"
    "高登身高1.93米，场上位置得分后卫。"
    "2008年，戈登宣布弃学进入NBA，在当年的NBA选秀中以第一轮第7顺位被快艇选中。"
    "2011年12月15日，戈登在CP3交易案中被送到纽奥良黄蜂。"
)


def test_an_answer_from_elsewhere_in_the_chunk_is_not_verified(embedder: LocalEmbedder) -> None:
    """The swapped entity is in the chunk, but not in the span that states the claim."""
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.65, semantic_threshold=0.513)
    right = verifier.support("2011年12月15日，戈登在CP3交易案中被送到纽奥良黄蜂。", GORDON)
    assert right.verified, right
    assert GORDON[right.span_start : right.span_end] == (
        "2011年12月15日，戈登在CP3交易案中被送到纽奥良黄蜂。"
    )
    swapped = verifier.support("2011年12月15日，戈登在CP3交易案中被送到NBA休士顿火箭。", GORDON)
    assert not swapped.verified
    assert swapped.reason is not None
    assert GORDON[swapped.span_start : swapped.span_end] == (
        "2011年12月15日，戈登在CP3交易案中被送到纽奥良黄蜂。"
    )
    assert swapped.reason == (
        "'NBA' not in the quoted span (the source names it elsewhere); 'NBA休士顿火箭' not in the "
        "quoted span (the source has it elsewhere); the source says '纽奥良黄蜂'"
    )
    source = (
        "Initech Corporation was founded in Austin. Its chief executive is Bill Lumbergh. The "
        "company sells printers and staplers to offices. Globex Corporation reported revenue of "
        "$4.2 billion in fiscal 2023."
    )
    english = verifier.support(
        "Initech Corporation reported revenue of $4.2 billion in fiscal 2023.", source
    )
    assert not english.verified
    assert english.reason == "'Initech' not in the quoted span (the source names it elsewhere)"


HALT = (
    "The committee reviewed the proposal in March. The new policy does not reduce costs for "
    "small clinics. Larger hospitals reported savings of 12% in the first year."
)


def test_a_negation_added_or_removed_is_not_verified(embedder: LocalEmbedder) -> None:
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.65, semantic_threshold=0.513)
    assert verifier.support(
        "The new policy does not reduce costs for small clinics.", HALT
    ).verified
    removed = verifier.support("The new policy reduces costs for small clinics.", HALT)
    assert not removed.verified
    assert removed.reason == "the source says 'not', the claim does not"
    assert HALT[removed.span_start : removed.span_end] == (
        "The new policy does not reduce costs for small clinics."
    )
    added = verifier.support(
        "Larger hospitals did not report savings of 12% in the first year.", HALT
    )
    assert not added.verified
    assert added.reason == "the claim says 'not', the source does not"
    zh = "调查显示，道德感较不足的人很可能与新来的第三个人发生恋爱关系。这种关系称为三角关系。"
    assert verifier.support("道德感较不足的人很可能与第三个人发生恋爱关系。", zh).verified
    zh_removed = verifier.support("道德感较足的人很可能与第三个人发生恋爱关系。", zh)
    assert not zh_removed.verified
    assert zh_removed.reason == "the source says '不', the claim does not"


def test_a_quotation_with_an_exclamation_mark_is_one_claim_and_verifies(
    embedder: LocalEmbedder,
) -> None:
    source = 'At the crossing the sign says "Stop!" and drivers must halt. Cyclists may pass.'
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.65, semantic_threshold=0.513)
    support = verifier.support('The sign says "Stop!" and drivers must halt.', source)
    assert support.verified, support
    assert source[support.span_start : support.span_end] == (
        'At the crossing the sign says "Stop!" and drivers must halt.'
    )


def test_a_table_row_verifies_only_a_claim_about_its_subject(embedder: LocalEmbedder) -> None:
    table = "Product | Units | Price\nWidget | 150 | 9.99\nGadget | 75 | 24.50"
    verifier = CitationVerifier(embedder=embedder, lexical_threshold=0.65, semantic_threshold=0.513)
    assert verifier.support("Widgets sold 150 units.", table).verified
    wrong = verifier.support("Gadgets sold 150 units.", table)
    assert not wrong.verified
    assert wrong.reason is not None
    assert "the row is about 'Widget', which the claim does not name" in wrong.reason

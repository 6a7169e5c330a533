"""Is there evidence for a question among the retrieved chunks? Decides "not in the sources".

Two signals, each per embedding model (bench/abstention.py measures them):
- the chunk's dense cosine with the question (scales differ between models);
- the question's term coverage: the share of the question's IDF mass (its content terms, stemmed,
  stop words out; CJK bigrams) that the chunk's own text contains. A term found in none of the
  tenant's chunks weighs as much as the rarest term found: "Who won the 2014 World Cup?" against
  a biomedical corpus matches "won" at best, while a question the sources answer shares its rare
  terms with the passage that answers it.

A question has evidence when some chunk clears both thresholds; the chunks kept as sources are
those that clear the dense one.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

# Sentence ends for the sentence-level signals: a terminal mark before a space, or a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")
# Sentences shorter than this many characters join the next one (headings, list numbers).
_MIN_SENTENCE_CHARS = 20

# A term the tenant's corpus never saw weighs the largest known IDF; with none known, this.
_DEFAULT_WEIGHT = 1.0


@dataclass(frozen=True)
class EvidenceThresholds:
    min_dense: float
    min_coverage: float
    # The best sentence's dense cosine (0: not measured, no sentence is encoded).
    min_sentence: float = 0.0


# A chunk's signals: dense cosine, term coverage, best sentence's cosine (None: not measured).
EvidenceScores = tuple[float | None, float | None, float | None]


def term_weights(query_terms: Iterable[int], idf: Mapping[int, float]) -> dict[int, float]:
    """Each distinct query term's weight: its IDF in the tenant, or the largest known IDF for a
    term the tenant does not have (it cannot be matched, and it is the most specific)."""
    terms = set(query_terms)
    known = [idf[t] for t in terms if idf.get(t, 0) > 0]
    unseen = max(known, default=_DEFAULT_WEIGHT)
    return {t: idf[t] if idf.get(t, 0) > 0 else unseen for t in terms}


def coverage(weights: Mapping[int, float], chunk_terms: Iterable[int]) -> float:
    """Share (0-1) of the query's term weight found in the chunk; 1.0 for a query without terms
    (nothing to judge it by: the dense score decides)."""
    total = sum(weights.values())
    if total <= 0:
        return 1.0
    present = set(chunk_terms)
    return sum(w for t, w in weights.items() if t in present) / total


def has_evidence(scores: Sequence[EvidenceScores], thresholds: EvidenceThresholds) -> bool:
    """Whether some chunk's (dense, coverage, sentence) clears every threshold (None: not
    measured, counts as clearing it)."""
    return any(
        (dense is None or dense >= thresholds.min_dense)
        and (cover is None or cover >= thresholds.min_coverage)
        and (sentence is None or sentence >= thresholds.min_sentence)
        for dense, cover, sentence in scores
    )


def evidence_sentences(text: str) -> list[str]:
    """The chunk's sentences for the sentence-level signals (a short piece joins the next)."""
    sentences: list[str] = []
    pending = ""
    for piece in _SENTENCE_END.split(text):
        pending = f"{pending} {piece}".strip() if pending else piece.strip()
        if len(pending) >= _MIN_SENTENCE_CHARS:
            sentences.append(pending)
            pending = ""
    if pending:
        if sentences:
            sentences[-1] = f"{sentences[-1]} {pending}"
        else:
            sentences.append(pending)
    return sentences


def best_sentence_score(query_vector: Sequence[float], vectors: Iterable[Sequence[float]]) -> float:
    """The largest cosine between the (normalised) query vector and a sentence's vector."""
    return max(
        (sum(q * v for q, v in zip(query_vector, vector, strict=True)) for vector in vectors),
        default=0.0,
    )


class VectorCache:
    """Sentence vectors by text, least recently used out: the chunks a tenant's questions land
    on repeat, and their sentences need one encode each."""

    def __init__(self, *, max_entries: int) -> None:
        self._max_entries = max_entries
        self._vectors: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(
        self, texts: Sequence[str], encode: Callable[[Sequence[str]], list[list[float]]]
    ) -> list[list[float]]:
        """The vector of each text, in order; those not cached are encoded in one call."""
        with self._lock:
            known = {t: self._vectors[t] for t in set(texts) if t in self._vectors}
            for text in known:
                self._vectors.move_to_end(text)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            encoded = dict(zip(missing, encode(missing), strict=True))
            known.update(encoded)
            with self._lock:
                self._vectors.update(encoded)
                while len(self._vectors) > self._max_entries:
                    self._vectors.popitem(last=False)
        return [known[t] for t in texts]

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# A term the tenant's corpus never saw weighs the largest known IDF; with none known, this.
_DEFAULT_WEIGHT = 1.0


@dataclass(frozen=True)
class EvidenceThresholds:
    min_dense: float
    min_coverage: float


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


def has_evidence(
    scores: Sequence[tuple[float | None, float | None]], thresholds: EvidenceThresholds
) -> bool:
    """Whether any (dense score, coverage) pair clears both thresholds (None: not measured,
    counts as clearing it)."""
    return any(
        (dense is None or dense >= thresholds.min_dense)
        and (cover is None or cover >= thresholds.min_coverage)
        for dense, cover in scores
    )

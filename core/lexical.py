"""Sparse lexical vectors (BM25 term weights) for Qdrant's sparse index.

Qdrant applies the IDF part itself (the sparse vector's `Modifier.IDF`, counted per query over
the tenant's points only: `SearchParams.idf`), so a document vector holds only BM25's saturated
term frequency and a query vector holds one weight per distinct term.
Terms are hashed to 31-bit indices, so no vocabulary has to be stored or shared between processes.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.settings import LexicalSettings

# Words (letters and digits; punctuation splits them) and runs of CJK ideographs.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]+")

# The usual English stop list (Lucene's plus common function words); it drops words that carry
# no topic but would otherwise dominate the query's term count.
ENGLISH_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "also",
        "may",
        "might",
        "must",
        "shall",
        "upon",
        "via",
        "per",
        "et",
        "al",
    ]
)


@dataclass(frozen=True)
class SparseVector:
    """Indices are unique and sorted; values are positive."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)


def term_index(term: str) -> int:
    """A stable 31-bit index for a term (the same in every process and release)."""
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


class LexicalEncoder:
    """Tokenises English (stemmed, stop words dropped) and Chinese (character bigrams) text."""

    def __init__(self, settings: LexicalSettings) -> None:
        self._settings = settings
        self._stemmer: Any = None
        self._lock = threading.Lock()

    def _stem(self, words: list[str]) -> list[str]:
        if not self._settings.stem or not words:
            return words
        if self._stemmer is None:
            import Stemmer  # type: ignore[import-not-found]

            with self._lock:
                self._stemmer = self._stemmer or Stemmer.Stemmer("english")
        # PyStemmer objects are not thread-safe; stemming is cheap next to embedding.
        with self._lock:
            stems: list[str] = self._stemmer.stemWords(words)
        return stems

    def terms(self, text: str) -> list[str]:
        """The text's index terms, in order, with repeats."""
        terms: list[str] = []
        latin: list[str] = []
        for match in _WORD.finditer(text.lower()):
            token = match.group()
            cjk_runs = _CJK.findall(token)
            if not cjk_runs:
                if token not in ENGLISH_STOPWORDS or not self._settings.drop_stopwords:
                    latin.append(token)
                continue
            # A token mixing scripts: its CJK runs become bigrams, the rest stays a word.
            for rest in _CJK.split(token):
                if rest and (rest not in ENGLISH_STOPWORDS or not self._settings.drop_stopwords):
                    latin.append(rest)
            for run in cjk_runs:
                terms.extend(cjk_terms(run))
        terms.extend(self._stem(latin))
        return terms

    def encode_document(self, text: str) -> SparseVector:
        """BM25's saturated term frequency, length-normalised against `avg_terms`."""
        counts = Counter(self.terms(text))
        if not counts:
            return SparseVector((), ())
        k1, b = self._settings.k1, self._settings.b
        length = sum(counts.values())
        norm = k1 * (1 - b + b * length / self._settings.avg_terms)
        return _sparse((term, tf * (k1 + 1) / (tf + norm)) for term, tf in counts.items())

    def encode_query(self, text: str) -> SparseVector:
        """One weight per distinct term (repeats in a query add nothing in BM25)."""
        return _sparse((term, 1.0) for term in set(self.terms(text)))


def weight_by_idf(query: SparseVector, idf: dict[int, float], power: float) -> SparseVector:
    """Query weights IDF^(power - 1): Qdrant multiplies by IDF once more, so a term scores
    IDF^power. Terms without a known IDF (in no chunk of the corpus) keep their weight."""
    if power == 1 or not query:
        return query
    values = tuple(
        v * idf[i] ** (power - 1) if idf.get(i, 0) > 0 else v
        for i, v in zip(query.indices, query.values, strict=True)
    )
    return SparseVector(query.indices, values)


def has_cjk(text: str) -> bool:
    """Whether `text` holds Chinese/Japanese ideographs (the script decides some thresholds)."""
    return _CJK.search(text) is not None


def cjk_terms(run: str) -> list[str]:
    """Overlapping character bigrams; a lone character stays a unigram."""
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _sparse(weights: Iterable[tuple[str, float]]) -> SparseVector:
    by_index: dict[int, float] = {}
    for term, weight in weights:
        index = term_index(term)
        # A hash collision merges two terms; keeping the larger weight bounds the damage.
        by_index[index] = max(weight, by_index.get(index, 0.0))
    ordered = sorted(by_index.items())
    return SparseVector(tuple(i for i, _ in ordered), tuple(w for _, w in ordered))

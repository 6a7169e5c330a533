"""Query terms' IDF per corpus (a tenant, or what one end user of it may read), remembered.

Reading a term's IDF back from Qdrant is a one-term search, whose cost grows with the number of
the tenant's chunks holding the term: ~1 ms per query on 5k chunks, but ~90 ms for five common
terms on 10k chunks of a 100k-chunk collection. A term's IDF moves only as its corpus grows or
shrinks, so it is kept for `ttl_s` seconds (least recently used out beyond `max_entries`).
Entries are per corpus (`corpus_key`): one tenant's statistics never weigh another's query, and
an end user's never come from documents they may not read.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

# The IDF of a term no chunk of the corpus holds (it is left with its plain weight).
UNKNOWN = 0.0


def corpus_key(tenant_id: str, principals: tuple[str, ...] | None) -> str:
    """The cache key of the points a query's statistics count: the tenant's, narrowed to those
    readable by `principals` when an end user is given (the store's IDF corpus, the same)."""
    return json.dumps([tenant_id, None if principals is None else sorted(set(principals))])


class IdfCache:
    def __init__(
        self,
        *,
        ttl_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int], tuple[float, float]] = OrderedDict()

    def lookup(self, corpus: str, terms: Iterable[int]) -> tuple[dict[int, float], list[int]]:
        """The IDFs known for `terms` in `corpus` (UNKNOWN for a term it does not have), and the
        terms that must be read from the store."""
        known: dict[int, float] = {}
        missing: list[int] = []
        now = self._clock()
        with self._lock:
            for term in terms:
                entry = self._entries.get((corpus, term))
                if entry is None or entry[1] <= now:
                    missing.append(term)
                    continue
                self._entries.move_to_end((corpus, term))
                known[term] = entry[0]
        return known, missing

    def remember(self, corpus: str, asked: Iterable[int], found: dict[int, float]) -> None:
        """Keep what a store lookup of `asked` found (terms it did not find as UNKNOWN)."""
        if self._ttl_s <= 0:
            return
        until = self._clock() + self._ttl_s
        with self._lock:
            for term in asked:
                self._entries[(corpus, term)] = (found.get(term, UNKNOWN), until)
                self._entries.move_to_end((corpus, term))
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

"""Verified API keys, remembered briefly so the hot request path skips the key's SQL lookup.

Entries are keyed by the SHA-256 of the presented key (the plaintext is never held), live at most
`ttl_s` seconds and are bounded in number (the least recently used go first). Only keys the
database accepted are cached; an unknown or wrong key always reaches the database. The key's
expiry is checked on every hit, so it is exact. A revocation or limits change made through this
process clears the cache at once; one made elsewhere (the CLI, another replica) is seen within
`ttl_s`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from core.models import utcnow
from core.tenancy import TenantContext, as_utc


class KeyCache:
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
        self._entries: OrderedDict[bytes, tuple[TenantContext, float]] = OrderedDict()
        # Bumped by clear(): a lookup that started before a revocation must not cache its
        # (now stale) answer after the revocation cleared the cache.
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, presented_key: str) -> TenantContext | None:
        """The caller this key was verified as, if that was recent and the key has not expired."""
        if self._ttl_s <= 0:
            return None
        digest = _digest(presented_key)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            caller, cached_until = entry
            expires_at = caller.key_expires_at
            if self._clock() >= cached_until or (
                expires_at is not None and as_utc(expires_at) <= utcnow()
            ):
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return caller

    def put(self, presented_key: str, caller: TenantContext, *, generation: int) -> None:
        """Remember a key the database just accepted (read at `generation`)."""
        if self._ttl_s <= 0:
            return
        digest = _digest(presented_key)
        with self._lock:
            if generation != self._generation:
                return
            self._entries[digest] = (caller, self._clock() + self._ttl_s)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every key: called after a key is revoked or a tenant's limits change."""
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def __len__(self) -> int:
        return len(self._entries)


def _digest(presented_key: str) -> bytes:
    return hashlib.sha256(presented_key.encode()).digest()

"""Reader slots shared fairly: a global bound per process and a smaller one per tenant.

With `per_tenant < total`, a tenant's burst queues behind its own cap and never holds every
slot, so another tenant's request waits for at most one slot to free rather than for the
burst to drain: its time to first token stays bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class NoSlotError(RuntimeError):
    """No slot freed up within the timeout."""


class TenantSlots:
    def __init__(self, *, total: int, per_tenant: int, timeout_s: float) -> None:
        self._total = threading.BoundedSemaphore(total)
        self._per_tenant = per_tenant
        self._timeout_s = timeout_s
        self._held: dict[str, int] = {}
        self._changed = threading.Condition()

    def in_flight(self, tenant_id: str) -> int:
        with self._changed:
            return self._held.get(tenant_id, 0)

    @contextmanager
    def hold(self, tenant_id: str | None) -> Iterator[None]:
        """One slot for the tenant (None: not counted against any tenant) for the block."""
        deadline = time.monotonic() + self._timeout_s
        if tenant_id is not None:
            self._take_tenant_slot(tenant_id, deadline)
        try:
            if not self._total.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise NoSlotError("reader busy: no free slot within the timeout")
            try:
                yield
            finally:
                self._total.release()
        finally:
            if tenant_id is not None:
                self._release_tenant_slot(tenant_id)

    def _take_tenant_slot(self, tenant_id: str, deadline: float) -> None:
        with self._changed:
            has_room = self._changed.wait_for(
                lambda: self._held.get(tenant_id, 0) < self._per_tenant,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            if not has_room:
                raise NoSlotError(
                    f"reader busy: this tenant already has {self._per_tenant} answers in progress"
                )
            self._held[tenant_id] = self._held.get(tenant_id, 0) + 1

    def _release_tenant_slot(self, tenant_id: str) -> None:
        with self._changed:
            count = self._held[tenant_id] - 1
            if count:
                self._held[tenant_id] = count
            else:
                del self._held[tenant_id]  # idle tenants cost no memory
            self._changed.notify_all()

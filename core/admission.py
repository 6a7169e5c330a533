"""Admission control: a bound on the work one process takes on, overall and per tenant.

Past the bound a request waits a short while in a bounded queue, then is refused at once, so a
client is told to come back (503/429 with `Retry-After`) instead of timing out behind a queue
that never drains. Waiters are served first come, first served, except that one whose tenant is
at its own cap lets the others pass.

The gate is shared by every event loop of the process (tests run several): counts live under a
thread lock, and a waiter is woken through its own loop.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class Refusal(StrEnum):
    PROCESS = "process"  # the process is at its bound (503)
    TENANT = "tenant"  # the tenant is at its share (429)
    QUEUE = "queue"  # too many already waiting (503)


class OverloadedError(Exception):
    """Not admitted: why, and the seconds after which a retry is likely to get in."""

    def __init__(self, refusal: Refusal, retry_after_s: int, reason: str) -> None:
        super().__init__(reason)
        self.refusal = refusal
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class _Waiter:
    tenant_id: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False


@dataclass
class _Counts:
    in_flight: int = 0
    by_tenant: dict[str, int] = field(default_factory=dict)


class AdmissionGate:
    """At most `max_in_flight` admitted at once, `max_per_tenant` of them for one tenant; at most
    `max_queue` waiting, each for at most `max_wait_s`."""

    def __init__(
        self, *, max_in_flight: int, max_per_tenant: int, max_queue: int, max_wait_s: float
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_per_tenant = max_per_tenant
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._counts = _Counts()
        self._waiters: deque[_Waiter] = deque()
        # Mean time an admitted request held its slot (exponentially weighted): what the
        # Retry-After of a refusal is made of.
        self._hold_s = 1.0

    def in_flight(self, tenant_id: str | None = None) -> int:
        with self._lock:
            if tenant_id is None:
                return self._counts.in_flight
            return self._counts.by_tenant.get(tenant_id, 0)

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    async def acquire(self, tenant_id: str) -> float:
        """Admit the tenant's request (waiting at most `max_wait_s`) and return the monotonic
        time it was admitted; raise OverloadedError when it is not."""
        loop = asyncio.get_running_loop()
        with self._lock:
            # Whenever the process has room, every waiter is one held back by its own tenant's
            # cap (a release admits the others at once): one that fits passes them.
            if self._fits(tenant_id):
                self._admit(tenant_id)
                return time.monotonic()
            if len(self._waiters) >= self.max_queue or self.max_wait_s <= 0:
                raise self._refusal(tenant_id, queue_full=len(self._waiters) >= self.max_queue)
            waiter = _Waiter(tenant_id, loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.max_wait_s)
        except BaseException as exc:
            with self._lock:
                if waiter.granted:
                    if isinstance(exc, TimeoutError):
                        # Granted as the wait ran out: the slot is ours.
                        return time.monotonic()
                    self._release_locked(tenant_id)
                else:
                    self._waiters.remove(waiter)
                if isinstance(exc, TimeoutError):
                    raise self._refusal(tenant_id, queue_full=False) from None
            raise
        return time.monotonic()

    def release(self, tenant_id: str, admitted_at: float) -> None:
        """Give the slot back and admit whoever now fits, first come first served."""
        held_s = time.monotonic() - admitted_at
        with self._lock:
            self._hold_s = 0.8 * self._hold_s + 0.2 * held_s
            self._release_locked(tenant_id)

    def _release_locked(self, tenant_id: str) -> None:
        self._undo_admit(tenant_id)
        counts = self._counts
        for waiter in list(self._waiters):
            if counts.in_flight >= self.max_in_flight:
                break
            if self._fits(waiter.tenant_id):
                self._waiters.remove(waiter)
                self._admit(waiter.tenant_id)
                waiter.granted = True
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:
                    # Its event loop is gone, and the request with it.
                    waiter.granted = False
                    self._undo_admit(waiter.tenant_id)

    def _fits(self, tenant_id: str) -> bool:
        counts = self._counts
        return (
            counts.in_flight < self.max_in_flight
            and counts.by_tenant.get(tenant_id, 0) < self.max_per_tenant
        )

    def _admit(self, tenant_id: str) -> None:
        counts = self._counts
        counts.in_flight += 1
        counts.by_tenant[tenant_id] = counts.by_tenant.get(tenant_id, 0) + 1

    def _undo_admit(self, tenant_id: str) -> None:
        counts = self._counts
        counts.in_flight -= 1
        counts.by_tenant[tenant_id] -= 1
        if not counts.by_tenant[tenant_id]:
            del counts.by_tenant[tenant_id]

    def _refusal(self, tenant_id: str, *, queue_full: bool) -> OverloadedError:
        # Roughly one slot's hold time: by then a slot has most likely been given back.
        retry_after_s = max(1, math.ceil(self._hold_s))
        if self._counts.by_tenant.get(tenant_id, 0) >= self.max_per_tenant:
            return OverloadedError(
                Refusal.TENANT, retry_after_s,
                f"this tenant already has {self.max_per_tenant} requests in progress on this "
                "server; retry later",
            )  # fmt: skip
        if queue_full:
            return OverloadedError(
                Refusal.QUEUE, retry_after_s,
                f"server busy: {self.max_queue} requests already waiting; retry later",
            )  # fmt: skip
        return OverloadedError(
            Refusal.PROCESS, retry_after_s,
            f"server busy: {self.max_in_flight} requests in progress and no slot freed within "
            f"{self.max_wait_s:g} s; retry later",
        )  # fmt: skip


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

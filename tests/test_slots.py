"""Generation fairness: a tenant's burst holds at most its own cap of reader slots."""

from __future__ import annotations

import threading
import time

import pytest

from generation.slots import NoSlotError, TenantSlots


def _hold(slots: TenantSlots, tenant: str, started: threading.Event, release: threading.Event):
    def run() -> None:
        with slots.hold(tenant):
            started.set()
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_burst_leaves_slots_to_other_tenants() -> None:
    slots = TenantSlots(total=4, per_tenant=2, timeout_s=5)
    release = threading.Event()
    holders = []
    for _ in range(2):
        started = threading.Event()
        holders.append(_hold(slots, "noisy", started, release))
        assert started.wait(5)
    # The noisy tenant's third request waits for its own slots, not the others'.
    queued_started = threading.Event()
    holders.append(_hold(slots, "noisy", queued_started, release))
    time.sleep(0.2)
    assert not queued_started.is_set()
    assert slots.in_flight("noisy") == 2
    # Another tenant gets a slot at once, twice over (the bound on its time to first token).
    began = time.monotonic()
    with slots.hold("quiet"), slots.hold("quiet"):
        assert time.monotonic() - began < 0.1
    release.set()
    for thread in holders:
        thread.join(10)
    assert queued_started.is_set()
    assert slots.in_flight("noisy") == 0


def test_a_tenant_over_its_cap_gets_a_reason_after_the_timeout() -> None:
    slots = TenantSlots(total=4, per_tenant=1, timeout_s=0.2)
    with slots.hold("a"), pytest.raises(NoSlotError, match="already has 1"), slots.hold("a"):
        pass
    with slots.hold("a"):  # released after the failure
        pass


def test_reader_settings_refuse_a_tenant_cap_equal_to_the_total() -> None:
    from pydantic import ValidationError

    from core.settings import ReaderSettings

    with pytest.raises(ValidationError, match="max_concurrency_per_tenant"):
        ReaderSettings(max_concurrency=4, max_concurrency_per_tenant=4)


def test_lowering_only_the_total_lowers_the_default_tenant_cap() -> None:
    from core.settings import ReaderSettings

    assert ReaderSettings(max_concurrency=2).max_concurrency_per_tenant == 1
    assert ReaderSettings(max_concurrency=1).max_concurrency_per_tenant == 4  # one slot: no cap

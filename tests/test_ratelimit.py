"""One conformance suite for both token-bucket implementations (in-process and Redis)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from core.ratelimit import InProcessRateLimiter, RateLimiter, RedisRateLimiter
from tests.services import RedisServer


@pytest.fixture(params=["in-process", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[RateLimiter]:
    if request.param == "in-process":
        implementation: RateLimiter = InProcessRateLimiter()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        implementation = RedisRateLimiter(server.url)
    yield implementation
    implementation.close()


def _bucket() -> str:
    return f"test:{uuid.uuid4().hex}"  # fresh per test, since Redis is shared by the session


def test_a_burst_is_granted_then_refused_with_the_wait(limiter: RateLimiter) -> None:
    bucket = _bucket()
    assert [limiter.take(bucket, rate_per_s=2, burst=3) for _ in range(3)] == [0, 0, 0]
    wait = limiter.take(bucket, rate_per_s=2, burst=3)
    assert 0 < wait <= 0.5 + 0.05


def test_tokens_come_back_at_the_rate(limiter: RateLimiter) -> None:
    bucket = _bucket()
    limiter.take(bucket, rate_per_s=5, burst=1)
    wait = limiter.take(bucket, rate_per_s=5, burst=1)
    assert wait > 0
    time.sleep(wait + 0.05)
    assert limiter.take(bucket, rate_per_s=5, burst=1) == 0


def test_buckets_are_independent(limiter: RateLimiter) -> None:
    first, second = _bucket(), _bucket()
    assert limiter.take(first, rate_per_s=0.01, burst=1) == 0
    assert limiter.take(first, rate_per_s=0.01, burst=1) > 0
    assert limiter.take(second, rate_per_s=0.01, burst=1) == 0


def test_a_refused_take_spends_nothing(limiter: RateLimiter) -> None:
    bucket = _bucket()
    limiter.take(bucket, rate_per_s=1, burst=1)
    waits = [limiter.take(bucket, rate_per_s=1, burst=1) for _ in range(5)]
    # Refusals do not push the next token further away.
    assert all(w > 0 for w in waits)
    assert waits[-1] <= waits[0]


def test_redis_down_lets_requests_through() -> None:
    from tests.services import free_port

    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert limiter.take(_bucket(), rate_per_s=0.01, burst=1) == 0
    finally:
        limiter.close()

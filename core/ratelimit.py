"""Per-tenant token buckets: one port, an in-process and a Redis implementation.

A bucket holds up to `burst` tokens and refills at `rate_per_s`; each request takes one. With
several API replicas the buckets must be shared, so production keeps them in Redis (one Lua script
per take, atomic, timed by the Redis server's clock so replicas' clocks do not matter).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

logger = logging.getLogger(__name__)


class RateLimiter(Protocol):
    @property
    def blocking(self) -> bool:
        """Whether `take` waits on IO (then the API calls it from a thread, not the loop)."""
        ...

    def take(self, bucket: str, *, rate_per_s: float, burst: int) -> float:
        """Take one token: 0.0 when granted, else the seconds until one will be there."""
        ...

    def close(self) -> None: ...


class InProcessRateLimiter:
    """Buckets in this process's memory (the embedded default: one API process)."""

    blocking = False  # a dict update under a lock

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # bucket -> (tokens, at)

    def take(self, bucket: str, *, rate_per_s: float, burst: int) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(bucket, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate_per_s)
            if tokens >= 1:
                self._buckets[bucket] = (tokens - 1, now)
                return 0.0
            self._buckets[bucket] = (tokens, now)
            return (1 - tokens) / rate_per_s

    def close(self) -> None:
        with self._lock:
            self._buckets.clear()


_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisRateLimiter:
    """Buckets in Redis, shared by every replica; a full bucket's key expires by itself."""

    blocking = True  # a round trip to Redis

    def __init__(self, url: str, *, key_prefix: str = "ragkb:ratelimit:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._redis.register_script(_TAKE_SCRIPT)
        self._prefix = key_prefix

    def take(self, bucket: str, *, rate_per_s: float, burst: int) -> float:
        import redis

        try:
            wait = self._script(keys=[self._prefix + bucket], args=[rate_per_s, burst])
        except redis.RedisError as exc:
            # Fail open: a Redis outage must not take every query down with it; quotas that
            # protect storage are enforced in SQL, not here.
            logger.warning("rate limiter unavailable, request let through: %s", exc)
            return 0.0
        return float(wait)

    def close(self) -> None:
        self._redis.close()


def create_rate_limiter(redis_url: str | None) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else InProcessRateLimiter()

"""Cache-aside store of video representations in Redis (C5).

Each entry carries the row's `updated_at` as a version and a write only replaces an
entry that is not newer. Without that, an API read that fetched a PROCESSING row just
before the worker committed could overwrite the worker's fresh COMPLETED entry and serve
stale status for a whole TTL.

A cache that fails (H4: a Redis that accepts connections and never answers costs a full
socket timeout per call) can be bypassed for a while after a failure, so a request pays
that timeout at most once per `bypass_seconds` instead of on every read and write.

`redis` is imported by the code that makes the client, not here: importing it costs about
a quarter of a second, which the API function pays on a cold start only when it uses the
cache.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

KEY_PREFIX = "video:v1:"
_SET_IF_NOT_OLDER = """
local current = redis.call('GET', KEYS[1])
if current then
  local version = tonumber(string.match(current, '^(%d+)|'))
  if version and version > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
return 1
"""


class CacheUnavailable(RuntimeError):
    """Redis could not be reached or failed; the caller decides whether that matters."""


class VideoCache:
    def __init__(
        self,
        client: redis.Redis,
        ttl_seconds: int,
        *,
        bypass_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`bypass_seconds` > 0: after a failure, raise CacheUnavailable at once for that
        long instead of calling Redis."""
        from redis.exceptions import RedisError

        self._client = client
        self._ttl = ttl_seconds
        self._set_if_not_older = client.register_script(_SET_IF_NOT_OLDER)
        self._errors = (RedisError, OSError)
        self._bypass_seconds = bypass_seconds
        self._clock = clock
        self._bypass_until = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def key(video_id: str) -> str:
        return f"{KEY_PREFIX}{video_id}"

    def get(self, video_id: str) -> dict[str, Any] | None:
        raw = self._call(lambda: self._client.get(self.key(video_id)))
        if raw is None:
            return None
        _, _, document = raw.partition("|")
        try:
            return json.loads(document)
        except ValueError:  # not an entry this code wrote: a miss, and it gets replaced
            return None

    def put(self, video_id: str, representation: dict[str, Any], version: int) -> bool:
        """Store unless a newer version is cached; True if written."""
        document = json.dumps(representation, separators=(",", ":"), sort_keys=True)
        written = self._call(
            lambda: self._set_if_not_older(
                keys=[self.key(video_id)], args=[version, document, self._ttl]
            )
        )
        return bool(written)

    def _call(self, command: Callable[[], Any]) -> Any:
        with self._lock:
            bypassed = self._clock() < self._bypass_until
        if bypassed:
            raise CacheUnavailable("cache bypassed after a recent failure")
        try:
            return command()
        except self._errors as error:
            if self._bypass_seconds > 0:
                with self._lock:
                    self._bypass_until = self._clock() + self._bypass_seconds
            raise CacheUnavailable(str(error) or type(error).__name__) from error

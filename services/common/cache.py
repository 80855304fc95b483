"""Cache-aside store of video representations in Redis (C5).

Each entry carries the row's `updated_at` as a version and a write only replaces an
entry that is not newer. Without that, an API read that fetched a PROCESSING row just
before the worker committed could overwrite the worker's fresh COMPLETED entry and serve
stale status for a whole TTL.
"""

from __future__ import annotations

import json
from typing import Any

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
    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._set_if_not_older = client.register_script(_SET_IF_NOT_OLDER)

    @staticmethod
    def key(video_id: str) -> str:
        return f"{KEY_PREFIX}{video_id}"

    def get(self, video_id: str) -> dict[str, Any] | None:
        try:
            raw = self._client.get(self.key(video_id))
        except redis.RedisError as error:
            raise CacheUnavailable(str(error)) from error
        if raw is None:
            return None
        _, _, document = raw.partition("|")
        return json.loads(document)

    def put(self, video_id: str, representation: dict[str, Any], version: int) -> bool:
        """Store unless a newer version is cached; True if written."""
        document = json.dumps(representation, separators=(",", ":"), sort_keys=True)
        try:
            written = self._set_if_not_older(
                keys=[self.key(video_id)], args=[version, document, self._ttl]
            )
        except redis.RedisError as error:
            raise CacheUnavailable(str(error)) from error
        return bool(written)

"""A file the worker rewrites as it makes progress; the container health check reads it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

HEARTBEAT_FILE = "media-worker.heartbeat"


def heartbeat_path(scratch_dir: str | os.PathLike[str]) -> Path:
    return Path(scratch_dir) / HEARTBEAT_FILE


def write_heartbeat(path: Path, *, now: float | None = None) -> None:
    # Write then rename, so the health check never reads a half-written file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(
        json.dumps({"ts": time.time() if now is None else now, "pid": os.getpid()})
    )
    temporary.replace(path)


def heartbeat_age(path: Path, *, now: float | None = None) -> float | None:
    """Seconds since the last beat, or None if there is no readable heartbeat."""
    try:
        beat = json.loads(path.read_text())["ts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (time.time() if now is None else now) - float(beat)

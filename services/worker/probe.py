"""Media facts from ffprobe, for a file that must lie inside the media root."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.worker.errors import PermanentJobError, ProbeTimeout, TransientJobError

FFPROBE_ARGS = ("-v", "error", "-print_format", "json", "-show_format", "-show_streams")
_POLL_SECONDS = 0.2
_STDERR_TAIL = 300


@dataclass(frozen=True)
class MediaFacts:
    duration_s: float | None
    size_bytes: int | None
    container: str | None
    video_codec: str
    audio_codec: str | None
    width: int | None
    height: int | None
    bitrate: int | None


def resolve_source(media_root: str | os.PathLike[str], source_uri: str) -> Path:
    """The real path of `source_uri` under the root; symbolic links may not lead out."""
    root = Path(os.path.realpath(media_root))
    candidate = Path(os.path.realpath(root / source_uri.lstrip("/")))
    if not candidate.is_relative_to(root) or candidate == root:
        raise PermanentJobError(f"source {source_uri!r} resolves outside the media root")
    if not candidate.is_file():
        raise PermanentJobError(f"source file {source_uri!r} does not exist")
    return candidate


def run_ffprobe(ffprobe: str, path: Path, deadline: Callable[[], tuple[float, bool]]) -> Any:
    """ffprobe's JSON for `path`; `deadline()` gives (monotonic deadline, shutting down).

    The deadline is asked again while ffprobe runs so that a SIGTERM arriving mid-probe
    can shorten it to the stop timeout.
    """
    try:
        process = subprocess.Popen(
            [ffprobe, *FFPROBE_ARGS, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a timeout kills all of it
        )
    except OSError as error:
        raise TransientJobError(f"cannot run {ffprobe}: {error}") from error
    stdout, stderr = _wait(process, deadline)
    if process.returncode != 0:
        reason = stderr.decode(errors="replace").strip()[-_STDERR_TAIL:] or "no detail"
        raise PermanentJobError(f"ffprobe rejected the media: {reason}")
    try:
        return json.loads(stdout)
    except json.JSONDecodeError as error:
        raise PermanentJobError("ffprobe printed no JSON") from error


def _wait(process: subprocess.Popen[bytes], deadline: Callable[[], tuple[float, bool]]):
    while True:
        limit, shutting_down = deadline()
        remaining = limit - time.monotonic()
        if remaining <= 0:
            _kill_group(process)
            process.communicate()
            raise ProbeTimeout("ffprobe timed out", shutting_down=shutting_down)
        try:
            return process.communicate(timeout=min(_POLL_SECONDS, remaining))
        except subprocess.TimeoutExpired:
            continue


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def facts_from_probe(document: Any) -> MediaFacts:
    if not isinstance(document, dict):
        raise PermanentJobError("ffprobe output is not an object")
    streams = document.get("streams") or []
    media_format = document.get("format") or {}
    video = _first_stream(streams, "video")
    if video is None:
        raise PermanentJobError("the media has no video stream")
    audio = _first_stream(streams, "audio")
    return MediaFacts(
        duration_s=_number(media_format.get("duration"), float),
        size_bytes=_number(media_format.get("size"), int),
        container=media_format.get("format_name"),
        video_codec=video.get("codec_name") or "unknown",
        audio_codec=None if audio is None else audio.get("codec_name"),
        width=_number(video.get("width"), int) or None,
        height=_number(video.get("height"), int) or None,
        bitrate=_number(media_format.get("bit_rate"), int),
    )


def _first_stream(streams: list[Any], kind: str) -> dict[str, Any] | None:
    # Cover art is reported as a one-frame video stream; it does not make a file a video.
    for stream in streams:
        if not isinstance(stream, dict) or stream.get("codec_type") != kind:
            continue
        if kind == "video" and (stream.get("disposition") or {}).get("attached_pic"):
            continue
        return stream
    return None


def _number(value: Any, kind: type) -> Any:
    if value in (None, "", "N/A"):
        return None
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def probe_media(
    ffprobe: str,
    media_root: str | os.PathLike[str],
    source_uri: str,
    deadline: Callable[[], tuple[float, bool]],
) -> MediaFacts:
    path = resolve_source(media_root, source_uri)
    return facts_from_probe(run_ffprobe(ffprobe, path, deadline))

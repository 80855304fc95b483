"""Validation (M3) and the one-process ABR transcode to encrypted HLS (M4, M5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.common.content_keys import TitleKey
from services.common.settings import MediaSettings
from services.worker.probe import MediaFacts

Deadline = Callable[[], tuple[float, bool]]
"""(absolute monotonic deadline, whether it is the shutdown deadline), asked repeatedly."""


@dataclass(frozen=True)
class RenditionOutput:
    name: str
    width: int
    height: int
    bitrate: int
    """Target video bits/s."""
    bandwidth: int
    """Peak bits/s as the master playlist's BANDWIDTH gives it."""
    codecs: str
    playlist: str
    """Media playlist path relative to the output dir."""


@dataclass(frozen=True)
class TranscodeResult:
    facts: MediaFacts
    renditions: tuple[RenditionOutput, ...]
    master_playlist: str
    poster: str
    files: tuple[str, ...]
    """Every path to upload, relative to the output dir (never the key file)."""


def validate_source(
    path: Path, limits: MediaSettings, *, ffprobe_path: str, deadline: Deadline
) -> MediaFacts:
    raise NotImplementedError


def transcode(
    source: Path,
    facts: MediaFacts,
    output_dir: Path,
    *,
    video_id: str,
    key: TitleKey,
    settings: MediaSettings,
    deadline: Deadline,
    on_progress: Callable[[float], None],
    stop_requested: Callable[[], bool],
) -> TranscodeResult:
    raise NotImplementedError


def ffmpeg_version(ffmpeg_path: str) -> str:
    raise NotImplementedError

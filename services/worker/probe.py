"""Media facts from ffprobe, for a file that must lie inside the media root.

Only real video is accepted (M3). ffprobe follows references if a demuxer tells it to: a
text HLS playlist (named `.mp4` or not) makes it open and report on whatever file the
playlist names, and the image demuxers report a still picture as a one-frame video. So
ffprobe may open nothing but the local file (`-protocol_whitelist file`) with nothing but
the container demuxers below (`-format_whitelist`: no playlist, concat or image
demuxers), and what it reports must then be one of those containers with a video stream
that has a codec, a picture size and a duration.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.settings import MediaSettings
from services.worker.errors import PermanentJobError, ProbeTimeout, TransientJobError

# ffmpeg demuxer names (`ffprobe -demuxers`); each is a self-contained container.
ACCEPTED_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2",  # one demuxer: MP4 and QuickTime (external drefs off)
    "matroska,webm",
    "avi",
    "mpegts",
    "mxf",
)
FFPROBE_ARGS = (
    "-v", "error",
    "-protocol_whitelist", "file",
    "-format_whitelist", ",".join(ACCEPTED_FORMATS),
    "-print_format", "json", "-show_format", "-show_streams",
)  # fmt: skip
_POLL_SECONDS = 0.2
# What ffprobe prints when -format_whitelist refused the demuxer that recognised the file.
_NOT_ON_WHITELIST = re.compile(r"\[(?P<format>[\w,]+) @ [^\]]*\] Format not on whitelist")
_STDERR_TAIL = 300
# Picture codecs: a file holding one of these is a picture or an animation, not a video.
# (A single-frame MJPEG or H.264 "video" is caught by counting decoded frames instead.)
IMAGE_CODECS = frozenset(
    {
        "png", "apng", "bmp", "gif", "tiff", "webp", "jpegls", "qoi", "pam", "pbm", "pgm",
        "ppm", "pcx", "sgi", "targa", "xbm", "xwd", "dds", "exr", "hdr", "sunrast", "ljpeg",
    }
)  # fmt: skip


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
    frame_rate: float | None = None
    """Frames per second of the video stream (its average, else its nominal rate)."""
    video_stream: int | None = None
    """ffprobe's index of the stream judged here, so the transcode reads that one."""
    audio_stream: int | None = None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


def run_ffprobe(
    ffprobe: str,
    path: Path,
    deadline: Callable[[], tuple[float, bool]],
    args: tuple[str, ...] = FFPROBE_ARGS,
) -> Any:
    """ffprobe's JSON for `path`; `deadline()` gives (monotonic deadline, shutting down).

    The deadline is asked again while ffprobe runs so that a SIGTERM arriving mid-probe
    can shorten it to the stop timeout.
    """
    try:
        process = subprocess.Popen(
            # `file:` so that no other protocol can be read from the name.
            [ffprobe, *args, f"file:{path}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a timeout kills all of it
        )
    except OSError as error:
        raise TransientJobError(f"cannot run {ffprobe}: {error}") from error
    stdout, stderr = _wait(process, deadline)
    if process.returncode != 0:
        text = stderr.decode(errors="replace")
        refused = _NOT_ON_WHITELIST.search(text)
        if refused:
            raise PermanentJobError(f"the media's container {refused['format']!r} is not accepted")
        reason = text.strip()[-_STDERR_TAIL:] or "no detail"
        raise PermanentJobError(
            f"ffprobe rejected the media: the file is not a video it can read ({reason})"
        )
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


def require_video(document: Any) -> None:
    """PermanentJobError unless ffprobe saw an accepted container holding a video stream
    with a codec, a picture size and a duration (not a still image, not audio)."""
    if not isinstance(document, dict):
        raise PermanentJobError("ffprobe output is not an object")
    media_format = document.get("format") or {}
    if not isinstance(media_format, dict) or media_format.get("format_name") not in (
        ACCEPTED_FORMATS
    ):
        name = media_format.get("format_name") if isinstance(media_format, dict) else None
        raise PermanentJobError(f"the media's container {name!r} is not accepted")
    streams = document.get("streams") or []
    video = _first_stream(streams if isinstance(streams, list) else [], "video")
    if video is None:
        raise PermanentJobError("the media has no video stream")
    if not video.get("codec_name") or video.get("codec_name") == "none":
        raise PermanentJobError("the media's video stream has no codec ffprobe can decode")
    if not (_number(video.get("width"), int) and _number(video.get("height"), int)):
        raise PermanentJobError("the media's video stream has no picture size")
    duration = _number(media_format.get("duration"), float) or _number(video.get("duration"), float)
    if not duration:
        raise PermanentJobError("the media has no duration (a still image is not a video)")


def facts_from_probe(document: Any) -> MediaFacts:
    if not isinstance(document, dict):
        raise PermanentJobError("ffprobe output is not an object")
    streams = document.get("streams") or []
    media_format = document.get("format") or {}
    video = _first_stream(streams, "video")
    if video is None:
        raise PermanentJobError("the media has no video stream")
    audio = _first_stream(streams, "audio")
    width, height = _number(video.get("width"), int), _number(video.get("height"), int)
    if _quarter_turns(video) % 2:
        width, height = height, width
    return MediaFacts(
        duration_s=_number(media_format.get("duration"), float),
        size_bytes=_number(media_format.get("size"), int),
        container=media_format.get("format_name"),
        video_codec=video.get("codec_name") or "unknown",
        audio_codec=None if audio is None else audio.get("codec_name"),
        # As displayed: ffmpeg turns a picture by its display matrix before filtering.
        width=width or None,
        height=height or None,
        bitrate=_number(media_format.get("bit_rate"), int),
        frame_rate=_frame_rate(video),
        video_stream=_number(video.get("index"), int),
        audio_stream=None if audio is None else _number(audio.get("index"), int),
    )


def _first_stream(streams: list[Any], kind: str) -> dict[str, Any] | None:
    """The first stream of `kind`; for video, the first real one: cover art is reported as
    a one-frame video stream and does not make a file a video, and a picture stream
    counts only if nothing else is there (so that it is refused as a still image)."""
    found = [
        stream
        for stream in streams
        if isinstance(stream, dict)
        and stream.get("codec_type") == kind
        and not (kind == "video" and (stream.get("disposition") or {}).get("attached_pic"))
    ]
    if kind == "video":
        moving = [stream for stream in found if stream.get("codec_name") not in IMAGE_CODECS]
        found = moving or found
    return found[0] if found else None


def _number(value: Any, kind: type) -> Any:
    if value in (None, "", "N/A"):
        return None
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def _quarter_turns(video: dict[str, Any]) -> int:
    """How many quarter turns the display matrix (or an old `rotate` tag) applies."""
    degrees: Any = None
    for side_data in video.get("side_data_list") or []:
        if isinstance(side_data, dict) and "rotation" in side_data:
            degrees = side_data["rotation"]
    if degrees is None:
        degrees = (video.get("tags") or {}).get("rotate")
    try:
        return round(float(degrees) / 90) % 4
    except (TypeError, ValueError):
        return 0


def _frame_rate(video: dict[str, Any]) -> float | None:
    for name in ("avg_frame_rate", "r_frame_rate"):
        numerator, _, denominator = str(video.get(name) or "").partition("/")
        try:
            rate = float(numerator) / float(denominator or 1)
        except (ValueError, ZeroDivisionError):
            continue
        if math.isfinite(rate) and rate > 0:
            return rate
    return None


# -- Validation before transcoding (M3) ------------------------------------------------------
MIN_DIMENSION = 16
MAX_DIMENSION = 8192
"""8K UHD (7680x4320) fits; a larger picture is refused before it is decoded."""
MAX_FRAME_RATE = 240.0
MIN_DECODED_FRAMES = 2
# Decode the first few frames of the judged video stream: proves a decoder exists and that
# the stream holds more than one picture, without reading a long file to its end.
FRAME_CHECK_ARGS = (
    "-v", "error",
    "-protocol_whitelist", "file",
    "-format_whitelist", ",".join(ACCEPTED_FORMATS),
    "-read_intervals", "%+#8",
    "-count_frames",
    "-show_entries", "stream=nb_read_frames",
    "-print_format", "json",
)  # fmt: skip


def validate_source(
    path: Path,
    limits: MediaSettings,
    *,
    ffprobe_path: str,
    deadline: Callable[[], tuple[float, bool]],
) -> MediaFacts:
    """The facts of a source that may be transcoded; PermanentJobError with a reason a
    creator can act on otherwise, ProbeTimeout when `deadline` passes (M3)."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise PermanentJobError(f"the source file cannot be read: {error.strerror}") from None
    if not path.is_file():
        raise PermanentJobError("the source is not a file")
    if size == 0:
        raise PermanentJobError("the uploaded file is empty")
    if size > limits.max_source_bytes:
        raise PermanentJobError(
            f"the uploaded file is {size} bytes; at most {limits.max_source_bytes} are accepted"
        )
    document = run_ffprobe(ffprobe_path, path, deadline)
    require_video(document)
    facts = facts_from_probe(document)
    check_limits(facts, limits)
    _require_moving_picture(ffprobe_path, path, deadline, facts.video_stream)
    return facts


def check_limits(facts: MediaFacts, limits: MediaSettings) -> None:
    """PermanentJobError for a still-image codec or a duration, picture size or frame rate
    outside what the platform transcodes."""
    codec = facts.video_codec
    if codec in IMAGE_CODECS:
        raise PermanentJobError(
            f"the video stream is a still image ({codec}); upload a video file instead"
        )
    duration = facts.duration_s or 0.0
    if duration > limits.max_duration_seconds:
        raise PermanentJobError(
            f"the video is {duration:.0f} s long; at most {limits.max_duration_seconds} s are"
            " accepted"
        )
    width, height = facts.width or 0, facts.height or 0
    if min(width, height) < MIN_DIMENSION or max(width, height) > MAX_DIMENSION:
        raise PermanentJobError(
            f"the picture is {width}x{height}; each side must be {MIN_DIMENSION} to"
            f" {MAX_DIMENSION} pixels"
        )
    if facts.frame_rate is not None and facts.frame_rate > MAX_FRAME_RATE:
        raise PermanentJobError(
            f"the frame rate is {facts.frame_rate:.0f} fps; at most {MAX_FRAME_RATE:.0f} is"
            " accepted"
        )


def _require_moving_picture(
    ffprobe: str, path: Path, deadline: Callable[[], tuple[float, bool]], index: int | None
) -> None:
    stream = "V:0" if index is None else str(index)
    document = run_ffprobe(ffprobe, path, deadline, (*FRAME_CHECK_ARGS, "-select_streams", stream))
    streams = document.get("streams") if isinstance(document, dict) else None
    first = streams[0] if isinstance(streams, list) and streams else {}
    frames = _number(first.get("nb_read_frames") if isinstance(first, dict) else None, int)
    if not frames:
        raise PermanentJobError(
            "no frame of the video stream could be decoded; the file is damaged or uses a"
            " codec that is not supported"
        )
    if frames < MIN_DECODED_FRAMES:
        raise PermanentJobError("the video holds a single picture; upload a moving video")

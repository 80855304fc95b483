"""One ffmpeg process turns a validated source into an encrypted HLS ladder (M4, M5).

One decode feeds every rendition: `split` copies the decoded picture to one `scale` per
rung and one more for the poster, so the source is read and decoded once however long the
ladder. Segment boundaries line up across renditions because every encoder is forced to a
key frame at the same instants (multiples of the segment length) with scene-cut key frames
off, and the HLS muxer cuts only at key frames. Every segment is AES-128 encrypted with the
title's key, which exists on disk only for the run, in a private directory outside the
output tree (so an upload of the output tree can never carry it).

ffmpeg 5.1 (Debian bookworm) schedules a multi-output graph from one thread; x264 threads
inside each encoder. `scripts/bench_transcode.py` measures what that costs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from services.common.content_keys import TitleKey
from services.common.settings import MediaSettings
from services.contract import (
    AUDIO_BITRATE_KBPS,
    MASTER_PLAYLIST,
    MEDIA_PLAYLIST,
    POSTER,
    Rung,
    key_uri,
)
from services.worker.errors import (
    PermanentJobError,
    TranscodeStopped,
    TranscodeTimeout,
    TransientJobError,
)
from services.worker.probe import ACCEPTED_FORMATS, MediaFacts, validate_source

__all__ = [
    "Deadline",
    "RenditionOutput",
    "TranscodeResult",
    "ffmpeg_version",
    "transcode",
    "validate_source",
]

log = logging.getLogger(__name__)

Deadline = Callable[[], tuple[float, bool]]
"""(absolute monotonic deadline, whether it is the shutdown deadline), asked repeatedly."""

X264_PRESET = "veryfast"
"""Speed against size at a fixed bitrate: `veryfast` is about twice as fast as `medium` for a
few per cent more bits at equal quality — the usual choice for a cost-bound VOD ladder."""
MAXRATE_FACTOR = 1.1
"""VBV peak over the target: capped VBR, so BANDWIDTH (the peak) stays close to the target."""
BUFSIZE_FACTOR = 2.0
"""VBV buffer of two seconds at the target rate."""
AUDIO_CHANNELS = 2
AUDIO_SAMPLE_RATE = 48_000
AAC_LC_CODEC = "mp4a.40.2"
POSTER_OFFSET_FRACTION = 0.1
POSTER_OFFSET_MAX_SECONDS = 10.0
"""The poster is the first frame after 10 % of the video (at most 10 s in): past the fade-in."""
TERMINATE_GRACE_SECONDS = 3.0
PROGRESS_INTERVAL_SECONDS = 1.0
_POLL_SECONDS = 0.2
_STDERR_LINES = 20
_STDERR_LINE_CHARS = 400
_READER_JOIN_SECONDS = 5.0
SEGMENT_PATTERN = "seg_%05d.ts"
_SEGMENT_NAME = re.compile(r"^seg_\d{5,}\.ts$")
_TRANSIENT_FFMPEG_ERRORS = ("No space left on device", "Cannot allocate memory", "Disk quota")


@dataclass(frozen=True)
class RenditionOutput:
    name: str
    width: int
    height: int
    bitrate: int
    """Target video bits/s."""
    bandwidth: int
    """Peak bits/s of the variant (video and audio) as the master playlist's BANDWIDTH."""
    codecs: str
    """The master playlist's CODECS, e.g. `avc1.64001f,mp4a.40.2`."""
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


@dataclass(frozen=True)
class PlannedRendition:
    """A rung fitted to one source: its exact picture size and rates."""

    name: str
    width: int
    height: int
    video_kbps: int

    @property
    def maxrate_kbps(self) -> int:
        return math.ceil(self.video_kbps * MAXRATE_FACTOR)

    @property
    def bufsize_kbps(self) -> int:
        return math.ceil(self.video_kbps * BUFSIZE_FACTOR)

    @property
    def playlist(self) -> str:
        return f"{self.name}/{MEDIA_PLAYLIST}"


def plan_renditions(facts: MediaFacts, ladder: Iterable[Rung]) -> tuple[PlannedRendition, ...]:
    """The rungs no taller than the source, sized to its aspect ratio (even sides, square
    pixels); if every rung is taller, one rendition at the source's own size: never upscale.

    A rung's height is the picture's short side, so a portrait video gets the same detail
    as a landscape one (a 1080p rung of a 9:16 video is 1080x1920)."""
    width, height = facts.width, facts.height
    if not width or not height:
        raise PermanentJobError("the media's picture size is unknown")
    short = min(width, height)
    rungs = sorted(ladder, reverse=True)
    if not rungs:
        raise ValueError("the ladder has no rungs")
    fitting = [rung for rung in rungs if rung.height <= short]
    if not fitting:
        fitting = [Rung(_even_down(short), min(rung.video_kbps for rung in rungs))]
    planned = []
    for rung in fitting:
        scale = rung.height / short
        planned.append(
            PlannedRendition(
                name=rung.name,
                # Rounded to even, but never past the source's own (even) size.
                width=min(_even(width * scale), _even_down(width)),
                height=min(_even(height * scale), _even_down(height)),
                video_kbps=rung.video_kbps,
            )
        )
    return tuple(planned)


def _even(value: float) -> int:
    return max(2, math.floor(value / 2 + 0.5) * 2)


def _even_down(value: int) -> int:
    return max(2, value - value % 2)


def poster_offset(facts: MediaFacts) -> float:
    duration = facts.duration_s or 0.0
    return round(min(duration * POSTER_OFFSET_FRACTION, POSTER_OFFSET_MAX_SECONDS), 3)


def ffmpeg_command(
    source: Path,
    facts: MediaFacts,
    plan: tuple[PlannedRendition, ...],
    output_dir: Path,
    key_info_file: Path,
    *,
    settings: MediaSettings,
    preset: str = X264_PRESET,
) -> list[str]:
    """The whole ffmpeg argv: one input, one filter graph, every rendition and the poster."""
    segment = settings.segment_seconds
    graph = _filter_graph(plan, poster_offset(facts), facts.video_stream)
    audio = "0:a:0" if facts.audio_stream is None else f"0:{facts.audio_stream}"
    command = [
        settings.ffmpeg_path,
        # -y: a retry into the same output dir overwrites (without it, -nostdin makes
        # ffmpeg give up on the existing poster).
        "-nostdin", "-y", "-hide_banner", "-v", "error", "-nostats", "-progress", "pipe:1",
        # The same confinement as the probe: the local file only, containers only.
        "-protocol_whitelist", "file",
        "-format_whitelist", ",".join(ACCEPTED_FORMATS),
        "-i", f"file:{source}",
        "-filter_complex", graph,
        "-map_metadata", "-1", "-map_chapters", "-1",  # no GPS or device tags in outputs
    ]  # fmt: skip
    for index in range(len(plan)):
        command += ["-map", f"[v{index}]"]
        if facts.has_audio:
            command += ["-map", audio]
    command += ["-c:v", "libx264", "-profile:v", "high", "-preset", preset]
    for index, rendition in enumerate(plan):
        command += [
            f"-b:v:{index}", f"{rendition.video_kbps}k",
            f"-maxrate:v:{index}", f"{rendition.maxrate_kbps}k",
            f"-bufsize:v:{index}", f"{rendition.bufsize_kbps}k",
        ]  # fmt: skip
    # Key frames at the same instants in every rendition: cut points line up (ABR switching).
    command += [
        "-force_key_frames", f"expr:gte(t,n_forced*{segment})",
        "-sc_threshold", "0",
        "-flags", "+cgop",
    ]  # fmt: skip
    if facts.frame_rate:
        gop = max(1, math.ceil(segment * facts.frame_rate))
        command += ["-g", str(gop), "-keyint_min", str(gop)]
    if facts.has_audio:
        command += [
            "-c:a", "aac", "-profile:a", "aac_low", "-b:a", f"{AUDIO_BITRATE_KBPS}k",
            "-ac", str(AUDIO_CHANNELS), "-ar", str(AUDIO_SAMPLE_RATE),
        ]  # fmt: skip
    stream_map = " ".join(
        f"v:{index},a:{index},name:{rendition.name}" if facts.has_audio else
        f"v:{index},name:{rendition.name}"
        for index, rendition in enumerate(plan)
    )  # fmt: skip
    command += [
        "-max_muxing_queue_size", "4096",
        "-f", "hls",
        "-hls_time", str(segment),
        "-hls_playlist_type", "vod",
        "-hls_segment_type", "mpegts",  # ffmpeg cannot encrypt fMP4 segments
        "-hls_flags", "independent_segments",
        "-hls_key_info_file", str(key_info_file),
        "-hls_segment_filename", str(output_dir / "%v" / SEGMENT_PATTERN),
        "-master_pl_name", MASTER_PLAYLIST,
        "-var_stream_map", stream_map,
        str(output_dir / "%v" / MEDIA_PLAYLIST),
        # The poster: the last split branch, one frame, in the same process.
        "-map", "[poster]", "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "3",
        "-f", "image2", "-update", "1", str(output_dir / POSTER),
    ]  # fmt: skip
    return command


def _filter_graph(
    plan: tuple[PlannedRendition, ...], poster_at: float, video_stream: int | None
) -> str:
    branches = len(plan) + 1
    labels = "".join(f"[s{index}]" for index in range(branches))
    # The stream the probe judged; else `V`, the first video stream that is not cover art.
    source = "0:V:0" if video_stream is None else f"0:{video_stream}"
    parts = [f"[{source}]split={branches}{labels}"]
    for index, rendition in enumerate(plan):
        parts.append(
            f"[s{index}]scale=w={rendition.width}:h={rendition.height},setsar=1,"
            f"format=yuv420p[v{index}]"
        )
    top = plan[0]
    parts.append(
        f"[s{len(plan)}]select='gte(t\\,{poster_at})',"
        f"scale=w={top.width}:h={top.height},setsar=1,format=yuvj420p[poster]"
    )
    return ";".join(parts)


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
    preset: str = X264_PRESET,
) -> TranscodeResult:
    """Encrypted HLS renditions, master playlist and poster of `source` in `output_dir`.

    PermanentJobError when ffmpeg cannot turn the media into video; TranscodeTimeout when
    the deadline passes (ffmpeg killed); TranscodeStopped when `stop_requested()` turns
    true; TransientJobError when ffmpeg cannot run or the machine ran out of something."""
    plan = plan_renditions(facts, settings.ladder)
    output_dir.mkdir(parents=True, exist_ok=True)
    key_dir = Path(tempfile.mkdtemp(prefix=".key-", dir=output_dir.parent))  # mode 0700
    try:
        key_info = _write_key_info(key_dir, video_id, key)
        command = ffmpeg_command(
            source, facts, plan, output_dir, key_info, settings=settings, preset=preset
        )
        run_ffmpeg(
            command,
            duration=facts.duration_s or 0.0,
            deadline=deadline,
            on_progress=on_progress,
            stop_requested=stop_requested,
        )
    finally:
        _remove_key_dir(key_dir)
    return _collect(output_dir, facts, plan)


def _write_key_info(key_dir: Path, video_id: str, key: TitleKey) -> Path:
    if any(character in video_id for character in "\r\n"):
        raise ValueError("a video id cannot contain a line break")  # it would split the file
    key_file = key_dir / "title.key"
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key.key)
    # A fresh random IV per transcode: never the same (key, IV) pair for two outputs.
    key_info = key_dir / "key-info"
    key_info.write_text(f"{key_uri(video_id, key.version)}\n{key_file}\n{secrets.token_hex(16)}\n")
    return key_info


def _remove_key_dir(key_dir: Path) -> None:
    key_file = key_dir / "title.key"
    with contextlib.suppress(OSError):
        # Overwritten first: the scratch volume may outlive the task.
        size = key_file.stat().st_size
        with key_file.open("r+b") as handle:
            handle.write(b"\0" * size)
    shutil.rmtree(key_dir, ignore_errors=True)


# -- Running ffmpeg ------------------------------------------------------------------------


def run_ffmpeg(
    command: list[str],
    *,
    duration: float,
    deadline: Deadline,
    on_progress: Callable[[float], None],
    stop_requested: Callable[[], bool],
) -> None:
    """Run ffmpeg to the end, reporting progress; kill it at the deadline or on stop."""
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a kill reaches all of it
        )
    except OSError as error:
        raise TransientJobError(f"cannot run {command[0]}: {error}") from error
    stderr_tail: deque[str] = deque(maxlen=_STDERR_LINES)
    readers = [
        threading.Thread(
            target=_read_progress,
            args=(process.stdout, duration, on_progress),
            name="ffmpeg-progress",
            daemon=True,
        ),
        threading.Thread(
            target=_read_stderr, args=(process.stderr, stderr_tail), name="ffmpeg-stderr",
            daemon=True,
        ),
    ]  # fmt: skip
    for reader in readers:
        reader.start()
    try:
        _supervise(process, deadline, stop_requested)
    finally:
        if process.poll() is None:
            _stop(process)
        for reader in readers:
            reader.join(_READER_JOIN_SECONDS)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    if process.returncode != 0:
        raise _failure(process.returncode, list(stderr_tail))


def _supervise(
    process: subprocess.Popen[bytes], deadline: Deadline, stop_requested: Callable[[], bool]
) -> None:
    while process.poll() is None:  # a run that has ended is never called a timeout
        limit, shutting_down = deadline()
        remaining = limit - time.monotonic()
        if remaining <= 0:
            _stop(process)
            raise TranscodeTimeout(
                "ffmpeg ran past the job's deadline", shutting_down=shutting_down
            )
        if stop_requested():
            _stop(process)
            raise TranscodeStopped("the worker is stopping; the transcode was abandoned")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=min(_POLL_SECONDS, remaining))


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group, SIGKILL after a grace period; returns once it has exited."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _read_progress(stream, duration: float, on_progress: Callable[[float], None]) -> None:
    """Parse `-progress` blocks; report the fraction done at most once per interval, never
    going back. The pipe is read to its end whatever the callback does, or ffmpeg would
    block on a full pipe."""
    reported = -1.0
    last_call = -math.inf
    done = 0.0
    for raw in iter(stream.readline, b""):
        name, _, value = raw.decode(errors="replace").strip().partition("=")
        if name == "out_time_us":
            done = max(done, _fraction(value, duration))
        elif name == "progress":
            final = value == "end"
            now = time.monotonic()
            fraction = 1.0 if final else done
            if fraction > reported and (final or now - last_call >= PROGRESS_INTERVAL_SECONDS):
                reported, last_call = fraction, now
                try:
                    on_progress(fraction)
                except Exception:
                    log.exception("progress callback failed")


def _fraction(value: str, duration: float) -> float:
    # `out_time_us` can be N/A or a huge negative sentinel early on (FFmpeg trac #7345).
    try:
        microseconds = int(value)
    except ValueError:
        return 0.0
    if microseconds <= 0 or duration <= 0:
        return 0.0
    return min(1.0, microseconds / 1_000_000 / duration)


def _read_stderr(stream, tail: deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").strip()
        if line:
            tail.append(line[:_STDERR_LINE_CHARS])


def _failure(returncode: int, stderr: list[str]) -> Exception:
    detail = " | ".join(stderr[-3:]) or "no detail"
    if returncode < 0:
        # Killed by a signal nobody here sent (the OOM killer): the media may be fine.
        return TransientJobError(f"ffmpeg was killed by signal {-returncode}: {detail}")
    if any(marker in line for line in stderr for marker in _TRANSIENT_FFMPEG_ERRORS):
        return TransientJobError(f"ffmpeg ran out of resources: {detail}")
    return PermanentJobError(f"the video could not be transcoded: {detail}")


# -- Checking and collecting the outputs -----------------------------------------------------


def _collect(
    output_dir: Path, facts: MediaFacts, plan: tuple[PlannedRendition, ...]
) -> TranscodeResult:
    files: list[str] = []
    for rendition in plan:
        segments = _segments(output_dir / rendition.playlist)
        if not segments:
            raise PermanentJobError(f"no video was encoded for the {rendition.name} rendition")
        files.append(rendition.playlist)
        files += [f"{rendition.name}/{segment}" for segment in segments]
    if not (output_dir / POSTER).is_file():
        raise PermanentJobError("no poster frame could be taken from the video")
    attributes = ensure_master_playlist(output_dir / MASTER_PLAYLIST, plan, facts.has_audio)
    renditions = tuple(
        RenditionOutput(
            name=rendition.name,
            width=rendition.width,
            height=rendition.height,
            bitrate=rendition.video_kbps * 1000,
            bandwidth=attributes[rendition.playlist].bandwidth,
            codecs=attributes[rendition.playlist].codecs,
            playlist=rendition.playlist,
        )
        for rendition in plan
    )
    return TranscodeResult(
        facts=facts,
        renditions=renditions,
        master_playlist=MASTER_PLAYLIST,
        poster=POSTER,
        files=(MASTER_PLAYLIST, POSTER, *files),
    )


def _segments(playlist: Path) -> list[str]:
    """The segment names a media playlist lists; each must exist beside it."""
    try:
        lines = playlist.read_text().splitlines()
    except OSError:
        return []
    segments = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for name in segments:
        if not _SEGMENT_NAME.fullmatch(name) or not (playlist.parent / name).is_file():
            raise PermanentJobError(f"ffmpeg listed an unexpected segment {name!r}")
    return segments


@dataclass(frozen=True)
class VariantAttributes:
    bandwidth: int
    resolution: str
    codecs: str


_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def parse_master_playlist(text: str) -> dict[str, dict[str, str]]:
    """`#EXT-X-STREAM-INF` attributes by the variant URI that follows each."""
    variants: dict[str, dict[str, str]] = {}
    pending: dict[str, str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-STREAM-INF:"):
            body = line.split(":", 1)[1]
            pending = {name: value.strip('"') for name, value in _ATTRIBUTE.findall(body)}
        elif line and not line.startswith("#") and pending is not None:
            variants[line] = pending
            pending = None
    return variants


def ensure_master_playlist(
    path: Path, plan: tuple[PlannedRendition, ...], has_audio: bool
) -> dict[str, VariantAttributes]:
    """Every variant of the master playlist with BANDWIDTH, RESOLUTION and CODECS.

    ffmpeg writes them, but drops CODECS when it cannot read the encoder's SPS and may
    round a size differently; then the playlist is rewritten from what is known here."""
    try:
        written = parse_master_playlist(path.read_text())
    except OSError:
        written = {}
    result: dict[str, VariantAttributes] = {}
    complete = set(written) == {rendition.playlist for rendition in plan}
    for rendition in plan:
        found = written.get(rendition.playlist, {})
        resolution = f"{rendition.width}x{rendition.height}"
        bandwidth = _int(found.get("BANDWIDTH")) or _bandwidth(rendition, has_audio)
        codecs = found.get("CODECS") or _codecs(rendition, has_audio)
        complete = complete and found.get("RESOLUTION") == resolution and "CODECS" in found
        complete = complete and _int(found.get("BANDWIDTH")) is not None
        result[rendition.playlist] = VariantAttributes(bandwidth, resolution, codecs)
    if not complete:
        log.warning("rewriting the master playlist: ffmpeg left attributes out")
        path.write_text(_master_text(plan, result))
    return result


def _master_text(
    plan: tuple[PlannedRendition, ...], attributes: dict[str, VariantAttributes]
) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rendition in plan:
        variant = attributes[rendition.playlist]
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={variant.bandwidth},"
            f'RESOLUTION={variant.resolution},CODECS="{variant.codecs}"'
        )
        lines.append(rendition.playlist)
    return "\n".join(lines) + "\n"


def _int(value: str | None) -> int | None:
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number > 0 else None


def _bandwidth(rendition: PlannedRendition, has_audio: bool) -> int:
    audio = AUDIO_BITRATE_KBPS if has_audio else 0
    return (rendition.maxrate_kbps + audio) * 1000


def _codecs(rendition: PlannedRendition, has_audio: bool) -> str:
    # High profile (0x64), no constraint flags, the level x264 picks for this size at
    # 30 fps or less; a player treats the level as the decoder capability it needs.
    video = f"avc1.6400{_h264_level(rendition.width, rendition.height):02x}"
    return f"{video},{AAC_LC_CODEC}" if has_audio else video


# (level_idc, max frame size in macroblocks) from ITU-T H.264 Table A-1, at <= 30 fps.
_H264_LEVELS = ((21, 792), (30, 1620), (31, 3600), (32, 5120), (40, 8192), (50, 22080), (51, 36864))


def _h264_level(width: int, height: int) -> int:
    macroblocks = math.ceil(width / 16) * math.ceil(height / 16)
    for level, limit in _H264_LEVELS:
        if macroblocks <= limit:
            return level
    return 52


def ffmpeg_version(ffmpeg_path: str) -> str:
    """The first line of `ffmpeg -version` (logged at start: which build encodes), or a
    note saying why there is none."""
    try:
        completed = subprocess.run(
            [ffmpeg_path, "-hide_banner", "-version"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    first = completed.stdout.decode(errors="replace").splitlines()[:1]
    return first[0] if first and completed.returncode == 0 else "unavailable"

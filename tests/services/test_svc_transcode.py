"""M3 validation, M4 one-process ABR ladder and M5 AES-128 encryption, with real ffmpeg.

One transcode of a 5 s 640x360 clip with audio (noise-heavy testsrc2, so x264 spends its
whole budget) serves most assertions; a second, video-only 320x240 clip checks the
never-upscale rule."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from services.common.content_keys import TitleKey, load_keyring
from services.common.settings import MediaSettings
from services.contract import MASTER_PLAYLIST, POSTER, key_uri, parse_ladder
from services.worker.errors import (
    PermanentJobError,
    TranscodeStopped,
    TranscodeTimeout,
    TransientJobError,
)
from services.worker.probe import MediaFacts
from services.worker.transcode import (
    PlannedRendition,
    ensure_master_playlist,
    ffmpeg_version,
    parse_master_playlist,
    plan_renditions,
    transcode,
    validate_source,
)

pytestmark = pytest.mark.services

LADDER = "1080:2500,360:700,240:400,144:200"
SEGMENT = 2
DURATION = 5
VIDEO_ID = "6b1f3c1e-0c0a-4f0e-9d55-1f7a2c9b8e01"
KEYRING = {
    "current": "k2",
    "keys": {
        "k1": "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=",
        "k2": "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI=",
    },
}
SETTINGS = MediaSettings(
    ingest_bucket="ingest",
    media_bucket="media",
    ladder=parse_ladder(LADDER),
    segment_seconds=SEGMENT,
    max_source_bytes=200_000_000,
    max_duration_seconds=3600,
    delete_source_after_processing=False,
    transfer_concurrency=2,
    ffmpeg_path="ffmpeg",
)


def _deadline(seconds: float = 120, shutting_down: bool = False):
    limit = time.monotonic() + seconds
    return lambda: (limit, shutting_down)


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=60)


def _ffprobe(path: Path, *args: str) -> dict:
    completed = subprocess.run(
        ["ffprobe", "-v", "error", *args, "-of", "json", str(path)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return json.loads(completed.stdout or b"{}") if completed.returncode == 0 else {}


@dataclass
class Run:
    source: Path
    output: Path
    facts: MediaFacts
    key: TitleKey
    result: object
    progress: list[float]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25,noise=alls=25:allf=t",
        "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
        "-t", str(DURATION), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(folder / "clip.mp4"),
    )  # fmt: skip
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "2",
        "-c:v", "libx264", "-preset", "ultrafast", str(folder / "small.mkv"),
    )  # fmt: skip
    return folder


def _transcode(source: Path, output: Path, settings: MediaSettings, **kwargs) -> Run:
    key = load_keyring(json.dumps(KEYRING)).title_key(VIDEO_ID)
    facts = validate_source(source, settings, ffprobe_path="ffprobe", deadline=_deadline())
    progress: list[float] = []
    arguments = {
        "video_id": VIDEO_ID,
        "key": key,
        "settings": settings,
        "deadline": _deadline(),
        "on_progress": progress.append,
        "stop_requested": lambda: False,
    } | kwargs
    result = transcode(source, facts, output, **arguments)
    return Run(source, output, facts, key, result, progress)


@pytest.fixture(scope="module")
def ladder_run(clips, tmp_path_factory) -> Run:
    return _transcode(clips / "clip.mp4", tmp_path_factory.mktemp("job") / "out", SETTINGS)


@pytest.fixture(scope="module")
def small_run(clips, tmp_path_factory) -> Run:
    settings = replace(SETTINGS, ladder=parse_ladder("1080:2500,360:700"))
    return _transcode(clips / "small.mkv", tmp_path_factory.mktemp("small") / "out", settings)


def _iv(playlist: Path) -> bytes:
    text = playlist.read_text()
    found = re.search(r'#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)",IV=0x([0-9a-fA-F]{32})', text)
    assert found, text
    return bytes.fromhex(found[2])


def _decrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def _plain_segments(run: Run, name: str, tmp: Path, key: bytes | None = None) -> list[Path]:
    """The rendition's segments decrypted into `tmp`, in playlist order."""
    playlist = run.output / name / "index.m3u8"
    iv = _iv(playlist)
    names = [line for line in playlist.read_text().splitlines() if line.endswith(".ts")]
    paths = []
    for segment in names:
        plain = tmp / f"{name}-{segment}"
        plain.write_bytes(
            _decrypt((run.output / name / segment).read_bytes(), key or run.key.key, iv)
        )
        paths.append(plain)
    return paths


def _video_stream(path: Path) -> dict:
    streams = _ffprobe(path, "-show_streams", "-select_streams", "v:0").get("streams") or [{}]
    return streams[0]


# -- M4: the ladder -------------------------------------------------------------------------


def test_m4_ladder_drops_rungs_taller_than_the_source_and_keeps_exact_sizes(ladder_run, tmp_path):
    result = ladder_run.result
    assert [(r.name, r.width, r.height) for r in result.renditions] == [
        ("360p", 640, 360),
        ("240p", 426, 240),
        ("144p", 256, 144),
    ]
    assert [r.bitrate for r in result.renditions] == [700_000, 400_000, 200_000]
    for rendition in result.renditions:
        first = _plain_segments(ladder_run, rendition.name, tmp_path)[0]
        stream = _video_stream(first)
        assert (stream["width"], stream["height"]) == (rendition.width, rendition.height)
        assert stream["codec_name"] == "h264" and stream["profile"] == "High"
        assert stream.get("sample_aspect_ratio", "1:1") == "1:1"


def test_m4_each_variant_reaches_its_target_bitrate(ladder_run, tmp_path):
    """Measured: the video packets of all decrypted segments of a variant over the clip's
    duration, against the rung's -b:v (the whole segments also carry 128 kb/s of AAC and
    MPEG-TS overhead, which is not the encoder's target). Within +-15 %."""
    measured = {}
    for rendition in ladder_run.result.renditions:
        joined = tmp_path / f"{rendition.name}.ts"
        joined.write_bytes(
            b"".join(p.read_bytes() for p in _plain_segments(ladder_run, rendition.name, tmp_path))
        )
        packets = _ffprobe(joined, "-select_streams", "v:0", "-show_entries", "packet=size")
        video_bits = 8 * sum(int(p["size"]) for p in packets["packets"])
        measured[rendition.name] = video_bits / ladder_run.facts.duration_s
    for rendition in ladder_run.result.renditions:
        ratio = measured[rendition.name] / rendition.bitrate
        assert 0.85 <= ratio <= 1.15, (rendition.name, measured)


def test_m4_segments_align_across_renditions(ladder_run, tmp_path):
    starts = {}
    for rendition in ladder_run.result.renditions:
        segments = _plain_segments(ladder_run, rendition.name, tmp_path)
        starts[rendition.name] = [
            round(float(_video_stream(path)["start_time"]), 3) for path in segments
        ]
    first, *others = starts.values()
    assert len(first) == -(-DURATION // SEGMENT)  # 2 s segments of a 5 s clip: 3
    assert all(other == first for other in others), starts
    steps = [round(b - a, 3) for a, b in itertools.pairwise(first)]
    assert steps == [SEGMENT] * (len(first) - 1)


def test_m4_master_playlist_has_bandwidth_resolution_and_codecs_for_every_variant(ladder_run):
    variants = parse_master_playlist((ladder_run.output / MASTER_PLAYLIST).read_text())
    assert list(variants) == [r.playlist for r in ladder_run.result.renditions]
    for rendition in ladder_run.result.renditions:
        attributes = variants[rendition.playlist]
        assert attributes["RESOLUTION"] == f"{rendition.width}x{rendition.height}"
        assert int(attributes["BANDWIDTH"]) == rendition.bandwidth > rendition.bitrate
        assert attributes["CODECS"] == rendition.codecs
        assert re.fullmatch(r"avc1\.6400[0-9a-f]{2},mp4a\.40\.2", rendition.codecs)


def test_m4_media_playlists_are_complete_vod(ladder_run):
    for rendition in ladder_run.result.renditions:
        text = (ladder_run.output / rendition.playlist).read_text()
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.rstrip().endswith("#EXT-X-ENDLIST")
        assert f"#EXT-X-TARGETDURATION:{SEGMENT}" in text
        assert "#EXT-X-INDEPENDENT-SEGMENTS" in text


def test_m4_master_playlist_plays_in_ffprobe_with_the_key(ladder_run, tmp_path):
    """ffmpeg's own HLS demuxer follows master -> media playlists -> AES-128 segments once
    the key URI points at the key (delivery serves it at contract.key_uri)."""
    copy = tmp_path / "copy"
    shutil.copytree(ladder_run.output, copy)
    key_file = tmp_path / "title.key"
    key_file.write_bytes(ladder_run.key.key)
    uri = key_uri(VIDEO_ID, "k2")
    for rendition in ladder_run.result.renditions:
        playlist = copy / rendition.playlist
        text = playlist.read_text()
        assert f'URI="{uri}"' in text
        playlist.write_text(text.replace(uri, str(key_file)))
    document = _ffprobe(
        copy / MASTER_PLAYLIST, "-allowed_extensions", "ALL", "-protocol_whitelist",
        "file,crypto", "-show_streams", "-show_programs",
    )  # fmt: skip
    sizes = {(s["width"], s["height"]) for s in document["streams"] if s["codec_type"] == "video"}
    assert sizes == {(r.width, r.height) for r in ladder_run.result.renditions}
    assert sum(s["codec_type"] == "audio" for s in document["streams"]) == 3
    assert len(document["programs"]) == 3


def test_m4_poster_is_a_jpeg_of_the_top_rendition(ladder_run):
    stream = _video_stream(ladder_run.output / POSTER)
    assert stream["codec_name"] == "mjpeg"
    assert (stream["width"], stream["height"]) == (640, 360)


def test_m4_progress_is_monotone_throttled_and_ends_at_one(ladder_run):
    progress = ladder_run.progress
    assert progress and progress[-1] == 1.0
    assert progress == sorted(progress) and len(set(progress)) == len(progress)
    assert all(0 <= value <= 1 for value in progress)
    assert len(progress) <= 3 * DURATION  # about once a second, not per progress block


def test_m4_files_are_every_output_and_nothing_else(ladder_run):
    on_disk = sorted(
        str(path.relative_to(ladder_run.output))
        for path in ladder_run.output.rglob("*")
        if path.is_file()
    )
    assert sorted(ladder_run.result.files) == on_disk
    assert ladder_run.result.master_playlist == MASTER_PLAYLIST
    assert ladder_run.result.poster == POSTER
    assert sum(name.endswith(".ts") for name in on_disk) == 9


def test_m4_all_rungs_taller_gives_one_rung_at_source_height_and_video_only(small_run, tmp_path):
    """320x240 source, ladder 1080/360: never upscale; no audio means video-only variants."""
    (rendition,) = small_run.result.renditions
    assert (rendition.name, rendition.width, rendition.height) == ("240p", 320, 240)
    assert rendition.bitrate == 700_000
    assert re.fullmatch(r"avc1\.6400[0-9a-f]{2}", rendition.codecs)
    segment = _plain_segments(small_run, "240p", tmp_path)[0]
    streams = _ffprobe(segment, "-show_streams")["streams"]
    assert [s["codec_type"] for s in streams] == ["video"]


def test_m4_a_retry_into_the_same_output_dir_overwrites(clips, tmp_path):
    settings = replace(SETTINGS, ladder=parse_ladder("360:700"))
    first = _transcode(clips / "small.mkv", tmp_path / "out", settings)
    second = _transcode(clips / "small.mkv", tmp_path / "out", settings)
    assert second.result.files == first.result.files
    assert _iv(tmp_path / "out" / second.result.renditions[0].playlist)  # rewritten, new IV


def test_m4_plan_keeps_portrait_detail_and_even_sizes():
    ladder = parse_ladder("1080:5000,720:3000")
    portrait = MediaFacts(10.0, 1, "mov", "h264", None, 1080, 1920, 1, 30.0)
    assert plan_renditions(portrait, ladder) == (
        PlannedRendition("1080p", 1080, 1920, 5000),
        PlannedRendition("720p", 720, 1280, 3000),
    )
    odd = MediaFacts(10.0, 1, "mov", "h264", None, 853, 479, 1, 30.0)
    (only,) = plan_renditions(odd, ladder)
    assert (only.name, only.width, only.height) == ("478p", 852, 478)


def test_m4_master_playlist_missing_codecs_is_rewritten(tmp_path, ladder_run):
    master = tmp_path / MASTER_PLAYLIST
    original = (ladder_run.output / MASTER_PLAYLIST).read_text()
    master.write_text(re.sub(r',CODECS="[^"]*"', "", original))
    plan = plan_renditions(ladder_run.facts, SETTINGS.ladder)
    attributes = ensure_master_playlist(master, plan, has_audio=True)
    rewritten = parse_master_playlist(master.read_text())
    assert list(rewritten) == [r.playlist for r in plan]
    for rendition in plan:
        assert rewritten[rendition.playlist]["CODECS"] == attributes[rendition.playlist].codecs
        assert rewritten[rendition.playlist]["CODECS"].endswith(",mp4a.40.2")
    assert (tmp_path / MASTER_PLAYLIST).read_text() != original


def test_m3_m4_a_picture_stream_before_the_video_is_skipped_not_transcoded(
    clips, small_run, tmp_path
):
    """A picture stream first (cover art Matroska cannot flag as such), the video second:
    the video is judged and it, not the picture, is what ffmpeg transcodes."""
    source = tmp_path / "picture-first.mkv"
    _ffmpeg(
        "-f", "lavfi", "-t", "2", "-i", "testsrc2=size=64x64:rate=1", "-i",
        str(clips / "small.mkv"), "-map", "0:v", "-map", "1:v", "-c:v:0", "png",
        "-c:v:1", "copy", str(source),
    )  # fmt: skip
    settings = replace(SETTINGS, ladder=parse_ladder("1080:2500,360:700"))
    run = _transcode(source, tmp_path / "job" / "out", settings)
    assert (run.facts.video_codec, run.facts.video_stream) == ("h264", 1)
    (rendition,) = run.result.renditions
    assert (rendition.width, rendition.height) == (320, 240)
    segments = _plain_segments(run, rendition.name, tmp_path)
    assert (_video_stream(segments[0])["width"], len(segments)) == (320, 1)


# -- M5: encryption -------------------------------------------------------------------------


def test_m5_segments_are_encrypted_and_decrypt_with_the_derived_key(ladder_run, tmp_path):
    segment = ladder_run.output / "360p" / "seg_00000.ts"
    raw = segment.read_bytes()
    assert raw[0] != 0x47 or raw[188] != 0x47  # not MPEG-TS sync bytes
    assert not _ffprobe(segment, "-f", "mpegts", "-show_streams").get("streams")
    plain = _plain_segments(ladder_run, "360p", tmp_path)[0]
    assert plain.read_bytes()[0:1] == b"\x47"
    assert _video_stream(plain)["codec_name"] == "h264"


def test_m5_a_key_from_another_version_does_not_decrypt(ladder_run, tmp_path):
    wrong = load_keyring(json.dumps(KEYRING)).title_key(VIDEO_ID, "k1").key
    assert wrong != ladder_run.key.key
    try:
        plain = _plain_segments(ladder_run, "360p", tmp_path, key=wrong)[0]
    except ValueError:  # PKCS#7 padding did not check out
        return
    assert not _video_stream(plain)


def test_m5_the_key_is_never_written_beside_the_media(ladder_run):
    """The key file lived in a private directory next to (not in) the output; it is gone,
    and no output file holds the key bytes."""
    assert sorted(ladder_run.output.parent.iterdir()) == [ladder_run.output]
    for path in ladder_run.output.rglob("*"):
        if path.is_file():
            assert ladder_run.key.key not in path.read_bytes()
            assert ladder_run.key.key.hex() not in path.read_text(errors="ignore").lower()


# -- M3: validation --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(clips, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    files = {
        "corrupt": folder / "corrupt.mp4",
        "png": folder / "picture.mp4",
        "playlist": folder / "playlist.mp4",
        "audio_only": folder / "audio.m4a",
        "one_frame": folder / "one.mkv",
    }
    files["corrupt"].write_bytes(os.urandom(4096))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(folder / "p.png"))
    (folder / "p.png").rename(files["png"])
    secret = folder / "secret.txt"
    secret.write_text("not for you\n")
    files["playlist"].write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile://{secret}\n#EXT-X-ENDLIST\n"
    )
    _ffmpeg("-f", "lavfi", "-i", "sine", "-t", "1", "-c:a", "aac", str(files["audio_only"]))
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", "-c:v", "mjpeg",
        str(files["one_frame"]),
    )  # fmt: skip
    return files


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("corrupt", "ffprobe rejected the media: the file is not a video it can read"),
        ("png", "container 'png_pipe' is not accepted"),
        ("playlist", "container 'hls' is not accepted"),
        ("audio_only", "the media has no video stream"),
        ("one_frame", "single picture; upload a moving video"),
    ],
)
def test_m3_validation_rejects_what_is_not_a_video_with_a_reason(hostile, name, reason):
    with pytest.raises(PermanentJobError, match=re.escape(reason)):
        validate_source(hostile[name], SETTINGS, ffprobe_path="ffprobe", deadline=_deadline())


def test_m3_validation_enforces_the_duration_and_size_limits(clips):
    clip = clips / "clip.mp4"
    too_long = replace(SETTINGS, max_duration_seconds=DURATION - 1)
    with pytest.raises(PermanentJobError, match=r"is 5 s long; at most 4 s are accepted"):
        validate_source(clip, too_long, ffprobe_path="ffprobe", deadline=_deadline())
    size = clip.stat().st_size
    too_large = replace(SETTINGS, max_source_bytes=size - 1)
    with pytest.raises(PermanentJobError, match=f"is {size} bytes; at most {size - 1}"):
        validate_source(clip, too_large, ffprobe_path="ffprobe", deadline=_deadline())


def test_m3_validation_reports_the_facts(ladder_run):
    facts = ladder_run.facts
    assert (facts.width, facts.height, facts.frame_rate) == (640, 360, 25.0)
    assert (facts.video_codec, facts.audio_codec, facts.has_audio) == ("h264", "aac", True)
    assert facts.duration_s == pytest.approx(DURATION, abs=0.1)
    assert facts.size_bytes == ladder_run.source.stat().st_size
    assert facts.container.startswith("mov,mp4") and facts.bitrate > 0


# -- Deadline, stop and failures --------------------------------------------------------------


def _ffmpeg_processes_writing(output: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(output).encode() in command:
                found.append(entry.name)
    return found


@pytest.mark.parametrize("shutting_down", [False, True])
def test_m4_deadline_kills_ffmpeg_and_leaves_no_key(clips, ladder_run, tmp_path, shutting_down):
    output = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(TranscodeTimeout) as caught:
        transcode(
            clips / "clip.mp4", ladder_run.facts, output, video_id=VIDEO_ID, key=ladder_run.key,
            settings=SETTINGS, deadline=_deadline(0.3, shutting_down), on_progress=lambda f: None,
            stop_requested=lambda: False,
        )  # fmt: skip
    assert caught.value.shutting_down is shutting_down
    assert isinstance(caught.value, TransientJobError)
    assert time.monotonic() - started < 5
    assert not _ffmpeg_processes_writing(output)
    assert sorted(tmp_path.iterdir()) == [output]  # the key directory is gone


def test_m4_stop_request_kills_ffmpeg_and_says_stopped(clips, ladder_run, tmp_path):
    output = tmp_path / "out"
    polls = iter([False, False, True])
    with pytest.raises(TranscodeStopped):
        transcode(
            clips / "clip.mp4", ladder_run.facts, output, video_id=VIDEO_ID, key=ladder_run.key,
            settings=SETTINGS, deadline=_deadline(), on_progress=lambda f: None,
            stop_requested=lambda: next(polls, True),
        )  # fmt: skip
    assert not _ffmpeg_processes_writing(output)
    assert sorted(tmp_path.iterdir()) == [output]


def test_m4_an_ffmpeg_that_ignores_sigterm_is_killed(ladder_run, tmp_path, monkeypatch):
    """TERM first so ffmpeg can stop cleanly; KILL after the grace period if it does not."""
    monkeypatch.setattr("services.worker.transcode.TERMINATE_GRACE_SECONDS", 0.3)
    pid_file = tmp_path / "pid"
    stubborn = tmp_path / "stubborn-ffmpeg"
    stubborn.write_text(f"#!/bin/sh\ntrap '' TERM\necho $$ > {pid_file}\nexec sleep 30\n")
    stubborn.chmod(0o755)
    settings = replace(SETTINGS, ffmpeg_path=str(stubborn))
    started = time.monotonic()
    with pytest.raises(TranscodeTimeout):
        transcode(
            ladder_run.source, ladder_run.facts, tmp_path / "out", video_id=VIDEO_ID,
            key=ladder_run.key, settings=settings, deadline=_deadline(0.5),
            on_progress=lambda f: None, stop_requested=lambda: False,
        )  # fmt: skip
    assert time.monotonic() - started < 3
    assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()


def test_m4_undecodable_input_is_permanent_with_ffmpegs_reason(hostile, ladder_run, tmp_path):
    with pytest.raises(PermanentJobError, match=r"could not be transcoded: .+"):
        transcode(
            hostile["corrupt"], ladder_run.facts, tmp_path / "out", video_id=VIDEO_ID,
            key=ladder_run.key, settings=SETTINGS, deadline=_deadline(),
            on_progress=lambda f: None, stop_requested=lambda: False,
        )  # fmt: skip


def test_m4_missing_ffmpeg_is_transient_and_version_says_unavailable(ladder_run, tmp_path):
    settings = replace(SETTINGS, ffmpeg_path=str(tmp_path / "no-ffmpeg"))
    with pytest.raises(TransientJobError, match="cannot run"):
        transcode(
            ladder_run.source, ladder_run.facts, tmp_path / "out", video_id=VIDEO_ID,
            key=ladder_run.key, settings=settings, deadline=_deadline(),
            on_progress=lambda f: None, stop_requested=lambda: False,
        )  # fmt: skip
    assert ffmpeg_version(settings.ffmpeg_path).startswith("unavailable")
    assert ffmpeg_version("ffmpeg").startswith("ffmpeg version ")

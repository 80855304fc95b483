"""W6 backoff arithmetic, ffprobe edge cases (timeouts, missing binary, odd output) and the
M3 limits on what ffprobe reports."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from services.common.settings import MediaSettings
from services.contract import parse_ladder
from services.worker.backoff import full_jitter_delay
from services.worker.errors import PermanentJobError, ProbeTimeout, TransientJobError
from services.worker.probe import (
    MediaFacts,
    check_limits,
    facts_from_probe,
    run_ffprobe,
)

pytestmark = pytest.mark.services


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 5), (2, 10), (3, 20), (8, 640), (9, 900), (500, 900)]
)
def test_w6_backoff_doubles_up_to_the_cap(attempt, expected):
    assert full_jitter_delay(attempt, base=5, cap=900, rng=lambda: 1.0) == expected


def test_w6_backoff_is_full_jitter():
    assert full_jitter_delay(4, base=5, cap=900, rng=lambda: 0.0) == 0
    assert full_jitter_delay(4, base=5, cap=900, rng=lambda: 0.5) == 20


def test_w6_backoff_never_passes_the_sqs_12_hour_visibility_limit():
    delay = full_jitter_delay(
        30, base=60, cap=43_200, seconds_since_first_receive=43_000, rng=lambda: 1.0
    )
    assert delay == 199
    assert full_jitter_delay(30, base=60, cap=43_200, seconds_since_first_receive=50_000) == 0


def _deadline(seconds: float, shutting_down: bool = False):
    limit = time.monotonic() + seconds
    return lambda: (limit, shutting_down)


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-ffprobe"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("shutting_down", [False, True])
def test_r3_ffprobe_timeout_is_transient_and_says_why(tmp_path, shutting_down):
    started = time.monotonic()
    with pytest.raises(ProbeTimeout) as caught:
        run_ffprobe(_script(tmp_path, "sleep 20"), tmp_path, _deadline(0.3, shutting_down))
    assert caught.value.shutting_down is shutting_down
    assert time.monotonic() - started < 5


def test_r3_missing_ffprobe_binary_is_transient(tmp_path):
    with pytest.raises(TransientJobError, match="cannot run"):
        run_ffprobe(str(tmp_path / "no-ffprobe"), tmp_path, _deadline(5))


def test_r3_ffprobe_printing_garbage_is_permanent(tmp_path):
    with pytest.raises(PermanentJobError, match="no JSON"):
        run_ffprobe(_script(tmp_path, "echo not-json"), tmp_path, _deadline(5))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "not an object"),
        ({"streams": [{"codec_type": "audio", "codec_name": "aac"}]}, "no video stream"),
        (
            {
                "streams": [
                    {
                        "codec_type": "video",
                        "codec_name": "mjpeg",
                        "disposition": {"attached_pic": 1},
                    }
                ]
            },
            "no video stream",
        ),
    ],
)
def test_r3_probe_documents_without_a_real_video_stream_are_permanent(document, message):
    with pytest.raises(PermanentJobError, match=message):
        facts_from_probe(document)


def test_r3_missing_or_odd_numbers_become_null():
    facts = facts_from_probe(
        {
            "format": {
                "duration": "N/A",
                "size": "-5",
                "bit_rate": "fast",
                "format_name": "matroska,webm",
            },
            "streams": ["junk", {"codec_type": "video", "width": 0, "height": "720"}],
        }
    )
    assert (facts.duration_s, facts.size_bytes, facts.bitrate) == (None, None, None)
    assert (facts.width, facts.height, facts.video_codec) == (None, 720, "unknown")
    assert (facts.container, facts.audio_codec) == ("matroska,webm", None)


def _limits(**changes):
    base = {
        "ingest_bucket": "i",
        "media_bucket": "m",
        "ladder": parse_ladder("720:3000"),
        "segment_seconds": 4,
        "max_source_bytes": 10**9,
        "max_duration_seconds": 600,
        "delete_source_after_processing": False,
        "transfer_concurrency": 1,
        "ffmpeg_path": "ffmpeg",
    }
    return MediaSettings(**(base | changes))


def _facts(**changes):
    return replace(
        MediaFacts(10.0, 1000, "matroska,webm", "h264", None, 1280, 720, 1, 30.0), **changes
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"video_codec": "png"}, r"still image \(png\)"),
        ({"video_codec": "gif"}, r"still image \(gif\)"),
        ({"duration_s": 601.0}, "is 601 s long; at most 600 s"),
        ({"width": 8194}, "the picture is 8194x720; each side must be 16 to 8192"),
        ({"height": 8}, "the picture is 1280x8"),
        ({"frame_rate": 1000.0}, "frame rate is 1000 fps; at most 240"),
    ],
)
def test_m3_limits_refuse_with_a_reason_a_creator_can_act_on(changes, reason):
    check_limits(_facts(), _limits())  # the baseline passes
    with pytest.raises(PermanentJobError, match=reason):
        check_limits(_facts(**changes), _limits())


def test_m3_facts_give_the_displayed_size_and_the_frame_rate():
    """A phone video stored 1920x1080 with a 90 degree display matrix is 1080x1920."""
    video = {
        "codec_type": "video",
        "codec_name": "h264",
        "width": 1920,
        "height": 1080,
        "avg_frame_rate": "30000/1001",
        "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}],
    }
    facts = facts_from_probe({"format": {"duration": "3"}, "streams": [video]})
    assert (facts.width, facts.height) == (1080, 1920)
    assert facts.frame_rate == pytest.approx(29.97, abs=0.01)
    unrotated = facts_from_probe(
        {
            "streams": [
                video | {"side_data_list": [], "avg_frame_rate": "0/0", "r_frame_rate": "25/1"}
            ]
        }
    )
    assert (unrotated.width, unrotated.height, unrotated.frame_rate) == (1920, 1080, 25.0)
    assert not unrotated.has_audio

#!/usr/bin/env python3
"""Benchmark of the worker's transcode (not a test).

On a generated 1080p30 clip with audio it measures:
  * the worker's `transcode()` wall time against bare ffmpeg running the identical
    command (same argv, same key info) on the same clip, run in turn so drift cancels;
  * the realtime factor (media seconds per wall second) of the dev ladder
    (720:3000,480:1200,360:700) and the prod ladder (1080:5000,720:3000,480:1200,360:700),
    with the CPU seconds ffmpeg spent and how much of it its main thread spent;
  * from those, the cost per minute of output on Fargate Spot for the dev task (1 vCPU,
    2 GiB) and the prod task (4 vCPU, 8 GiB) and for a 2-hour film, beside AWS Elemental
    MediaConvert's per-minute price.

Scaling to other core counts: ffmpeg 5.1 runs demuxing, decoding hand-off, filtering
(split, scale) and muxing from one main thread; x264 threads inside each encoder. So a
task with N vCPUs needs at least max(main-thread CPU, all CPU / N) wall seconds: linear
in N until the main thread is the bottleneck. The figures assume one Fargate vCPU is as
fast as one core here.

    python scripts/bench_transcode.py [--seconds 24] [--runs 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from services.common.content_keys import load_keyring  # noqa: E402
from services.common.settings import MediaSettings  # noqa: E402
from services.contract import parse_ladder  # noqa: E402
from services.worker.transcode import (  # noqa: E402
    _write_key_info,
    ffmpeg_command,
    ffmpeg_version,
    plan_renditions,
    transcode,
    validate_source,
)

DEV_LADDER = "720:3000,480:1200,360:700"
PROD_LADDER = "1080:5000,720:3000,480:1200,360:700"
DEV_TASK = (1, 2)  # vCPU, GiB
PROD_TASK = (4, 8)
# Fargate Spot, Linux/x86, per hour. AWS publishes the live rate on
# https://aws.amazon.com/fargate/pricing/ ("Spot pricing"); the figures below are the
# eu-west-1 Spot rates quoted by https://tomgregory.com/aws-fargate-spot-vs-fargate-price-comparison/
# (on-demand there: $0.04048 per vCPU-hour, $0.004445 per GB-hour, i.e. Spot about 67 % off).
SPOT_VCPU_HOUR = 0.01334053
SPOT_GB_HOUR = 0.00146489
# AWS Elemental MediaConvert on-demand (https://aws.amazon.com/mediaconvert/pricing/), Basic
# tier, AVC, single pass, <=30 fps, charged per minute of EACH output: $0.0075 per normalized
# minute, SD counts 1x and HD (720p and up) 2x, i.e. SD $0.0075 and HD $0.015 per minute
# (the first volume band; >30 fps doubles both: SD $0.015, HD $0.03 as quoted in
# gist.github.com/0xdeepmehta/2c2f548b19e29ed71e30492c1587770b).
MEDIACONVERT_SD_MINUTE = 0.0075
MEDIACONVERT_HD_MINUTE = 0.015
FILM_MINUTES = 120


def make_clip(path: Path, seconds: int) -> None:
    """1080p30 test pattern with light temporal noise (grain, so x264 must work for its
    bits) and a tone, H.264 High at ~12 Mb/s like a camera or an editor's export."""
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,noise=alls=8:allf=t",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", "12M",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", str(path),
        ],
        check=True,
    )  # fmt: skip


def settings_for(ladder: str) -> MediaSettings:
    return MediaSettings(
        ingest_bucket="bench",
        media_bucket="bench",
        ladder=parse_ladder(ladder),
        segment_seconds=4,
        max_source_bytes=10**12,
        max_duration_seconds=86_400,
        delete_source_after_processing=False,
        transfer_concurrency=1,
        ffmpeg_path="ffmpeg",
    )


def _deadline():
    limit = time.monotonic() + 3600
    return lambda: (limit, False)


KEY = load_keyring(
    json.dumps({"current": "b1", "keys": {"b1": "YmVuY2gtY29udGVudC1rZXktMzItYnl0ZXMtbG9uZyE="}})
).title_key("bench-video")


def run_worker(source: Path, facts, settings: MediaSettings, work: Path) -> dict[str, float]:
    """Wall time of `transcode()`, the CPU this Python process spent meanwhile (progress
    and stderr readers, supervision, key file, playlist checks) and ffmpeg's CPU."""
    output = work / "worker" / "out"
    shutil.rmtree(output.parent, ignore_errors=True)
    output.parent.mkdir(parents=True)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    transcode(
        source, facts, output, video_id="bench-video", key=KEY, settings=settings,
        deadline=_deadline(), on_progress=lambda fraction: None, stop_requested=lambda: False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "self_cpu": _cpu(resource.getrusage(resource.RUSAGE_SELF), self_before),
        "cpu": _cpu(resource.getrusage(resource.RUSAGE_CHILDREN), children_before),
    }


def _cpu(after, before) -> float:
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_bare(source: Path, facts, settings: MediaSettings, work: Path) -> dict[str, float]:
    """The same argv as the worker's, run directly; CPU from the kernel's accounting of the
    child, the main thread's share sampled from /proc while it runs."""
    output = work / "bare" / "out"
    shutil.rmtree(output.parent, ignore_errors=True)
    output.mkdir(parents=True)
    key_dir = Path(tempfile.mkdtemp(dir=output.parent))
    command = ffmpeg_command(
        source, facts, plan_renditions(facts, settings.ladder), output,
        _write_key_info(key_dir, "bench-video", KEY), settings=settings,
    )  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    main_ticks = [0]
    sampler = threading.Thread(target=_sample_main_thread, args=(process, main_ticks))
    sampler.start()
    process.wait()
    wall = time.perf_counter() - started
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise SystemExit(f"ffmpeg failed ({process.returncode}): {' '.join(command)}")
    return {
        "wall": wall,
        "cpu": _cpu(after, before),
        "main": main_ticks[0] / os.sysconf("SC_CLK_TCK"),
    }


def _sample_main_thread(process: subprocess.Popen, ticks: list[int]) -> None:
    stat = Path(f"/proc/{process.pid}/task/{process.pid}/stat")
    while process.poll() is None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            ticks[0] = int(fields[11]) + int(fields[12])  # utime + stime of the main thread
        time.sleep(0.2)


def seconds_on(vcpus: int, cpu: float, main: float) -> float:
    return max(main, cpu / vcpus)


def task_cost_per_hour(vcpus: int, gib: int) -> float:
    return vcpus * SPOT_VCPU_HOUR + gib * SPOT_GB_HOUR


def mediaconvert_per_minute(ladder: str) -> float:
    return sum(
        MEDIACONVERT_HD_MINUTE if rung.height >= 720 else MEDIACONVERT_SD_MINUTE
        for rung in parse_ladder(ladder)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=24, help="clip length (default 24)")
    parser.add_argument("--runs", type=int, default=3, help="pairs for the overhead (3; 0: none)")
    parser.add_argument("--workdir", type=Path, help="keep the clip and outputs here")
    parser.add_argument("--skip-ladders", action="store_true", help="only the overhead")
    arguments = parser.parse_args()
    work = arguments.workdir or Path(tempfile.mkdtemp(prefix="bench-transcode-"))
    work.mkdir(parents=True, exist_ok=True)
    clip = work / f"clip-1080p30-{arguments.seconds}s.mp4"
    if not clip.exists():
        make_clip(clip, arguments.seconds)
    print(ffmpeg_version("ffmpeg"), f"| {os.cpu_count()} cores | clip {clip.stat().st_size} B")
    dev = settings_for(DEV_LADDER)
    facts = validate_source(clip, dev, ffprobe_path="ffprobe", deadline=_deadline())
    print(f"clip: {facts.width}x{facts.height} {facts.frame_rate:.0f} fps {facts.duration_s:.1f} s")

    if arguments.runs:
        overhead(clip, facts, dev, work, arguments.runs)
    if not arguments.skip_ladders:
        ladders(clip, facts, dev, work)


def overhead(clip: Path, facts, dev: MediaSettings, work: Path, runs: int) -> None:
    """Worker over bare ffmpeg, dev ladder, run in turn. On a busy machine the wall ratio
    is noise; the CPU the worker's own process spends is not."""
    worker_runs, bare_runs = [], []
    for _ in range(runs):
        worker_runs.append(run_worker(clip, facts, dev, work))
        bare_runs.append(run_bare(clip, facts, dev, work))
    ratios = [w["wall"] / b["wall"] for w, b in zip(worker_runs, bare_runs, strict=True)]
    own = [w["self_cpu"] / w["cpu"] for w in worker_runs]
    print(
        f"overhead (dev ladder, {runs} pairs): worker transcode() median"
        f" {statistics.median(w['wall'] for w in worker_runs):.2f} s, bare ffmpeg"
        f" {statistics.median(b['wall'] for b in bare_runs):.2f} s; wall ratio pair by pair"
        f" median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f});"
        f" ffmpeg CPU worker {statistics.median(w['cpu'] for w in worker_runs):.1f} s vs bare"
        f" {statistics.median(b['cpu'] for b in bare_runs):.1f} s; the worker process's own CPU"
        f" {statistics.median(w['self_cpu'] for w in worker_runs):.2f} s ="
        f" {100 * statistics.median(own):.2f} % of ffmpeg's"
    )


def ladders(clip: Path, facts, dev: MediaSettings, work: Path) -> None:
    """Realtime factor here and on each task, cost per output minute and per film."""
    duration = facts.duration_s
    for name, ladder, (vcpus, gib) in (
        ("dev", DEV_LADDER, DEV_TASK),
        ("prod", PROD_LADDER, PROD_TASK),
    ):
        settings = replace(dev, ladder=parse_ladder(ladder))
        profile = run_bare(clip, facts, settings, work)
        here = duration / profile["wall"]
        on_task = duration / seconds_on(vcpus, profile["cpu"], profile["main"])
        hourly = task_cost_per_hour(vcpus, gib)
        per_minute = hourly / 60 / on_task
        film_hours = FILM_MINUTES / on_task / 60
        print(
            f"{name} ladder {ladder}: {here:.2f}x realtime here (wall {profile['wall']:.1f} s,"
            f" ffmpeg CPU {profile['cpu']:.1f} s = {profile['cpu'] / profile['wall']:.2f} cores,"
            f" main thread {profile['main']:.1f} s)"
        )
        print(
            f"  {vcpus} vCPU/{gib} GiB Spot task (${hourly:.5f}/h): {on_task:.2f}x realtime,"
            f" ${per_minute:.5f} per output minute; 2-hour film {film_hours:.2f} h,"
            f" ${per_minute * FILM_MINUTES:.3f}; MediaConvert Basic"
            f" ${mediaconvert_per_minute(ladder):.4f}/min, film"
            f" ${mediaconvert_per_minute(ladder) * FILM_MINUTES:.2f}"
        )


if __name__ == "__main__":
    main()

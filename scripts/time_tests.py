#!/usr/bin/env python3
"""Wall time of the README's test command (`make test`), and of the infrastructure and
policy tests (tests/infra, tests/policy) on their own.

    python scripts/time_tests.py            # both, the full command first
    python scripts/time_tests.py --full     # only the full test command
    python scripts/time_tests.py --infra    # only tests/infra and tests/policy

Each run's output streams through; a summary with the wall times, the CPU time the run used
(user + system, of all its processes) and pytest's exit codes is printed at the end. The load
average is printed too: other work on the machine stretches the wall times. The exit code is
the first non-zero pytest exit code, else 0. Nothing is timed inside the tests: the times are
those of the whole commands, start-up included.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The README's command, as the Makefile's `test` target runs it (options come from pyproject).
FULL = [
    "-m", "pytest",
    "--cov=components", "--cov=services", "--cov-report=term-missing:skip-covered",
]  # fmt: skip
INFRA = ["-m", "pytest", "tests/infra", "tests/policy", "-q"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(label: str, args: list[str]) -> tuple[str, float, float, int]:
    command = [sys.executable, *args]
    print(f"\n=== {label}: {' '.join(command)}", flush=True)
    started, cpu = time.monotonic(), _children_cpu()
    code = subprocess.run(command, cwd=ROOT, env=os.environ.copy(), check=False).returncode
    return label, time.monotonic() - started, _children_cpu() - cpu, code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="only the full test command")
    parser.add_argument("--infra", action="store_true", help="only tests/infra and tests/policy")
    args = parser.parse_args(argv)
    both = not (args.full or args.infra)
    results = []
    if args.full or both:
        results.append(timed("full test command", FULL))
    if args.infra or both:
        results.append(timed("infra + policy tests", INFRA))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n=== wall times on {os.cpu_count()} CPUs (load average now {load})")
    for label, seconds, cpu, code in results:
        print(
            f"{label:22} {seconds:7.1f} s  ({seconds / 60:.1f} min)"
            f"  CPU {cpu:6.1f} s  pytest exit {code}"
        )
    return next((code for *_, code in results if code), 0)


if __name__ == "__main__":
    sys.exit(main())

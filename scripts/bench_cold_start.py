#!/usr/bin/env python3
"""Cold-start benchmark of the API function (not a test).

Imports the Lambda entry module in fresh interpreters, the way a new execution environment
does, and prints the min and median of the import time Python itself reports
(`-X importtime`, cumulative microseconds of the module) and of the whole process.

    python scripts/bench_cold_start.py [--runs 15] [--module services.api.handler]
    python scripts/bench_cold_start.py --top 15   # also the slowest imports of one run
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_LINE = re.compile(r"^import time:\s+(?P<self>\d+) \|\s+(?P<cumulative>\d+) \|(?P<name>.*)$")


def import_times(module: str) -> tuple[float, float, list[tuple[int, str]]]:
    """(module import ms, whole process ms, [(cumulative us, module)]) of one fresh run."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    process_ms = (time.perf_counter() - started) * 1000
    rows = []
    for line in result.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            rows.append((int(match["cumulative"]), match["name"].rstrip()))
    own = next(us for us, name in reversed(rows) if name.strip() == module)
    return own / 1000, process_ms, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--module", default="services.api.handler")
    parser.add_argument("--top", type=int, default=0, help="print the N slowest imports")
    args = parser.parse_args()
    import_times(args.module)  # warm the bytecode and file-system caches
    imports, processes, rows = [], [], []
    for _ in range(args.runs):
        module_ms, process_ms, rows = import_times(args.module)
        imports.append(module_ms)
        processes.append(process_ms)
    print(f"import {args.module}, {args.runs} fresh processes")
    for label, values in (("import (ms)", imports), ("process (ms)", processes)):
        print(f"  {label:<13} min {min(values):7.1f}  median {statistics.median(values):7.1f}")
    for us, name in sorted(rows, reverse=True)[: args.top]:
        print(f"  {us / 1000:8.1f} ms {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

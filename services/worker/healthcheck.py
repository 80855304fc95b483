"""Container health check: `python -m services.worker.healthcheck`.

Exit 0 when the worker's heartbeat is fresh, 1 otherwise. The worker beats before every
receive (at most RECEIVE_WAIT_SECONDS apart) and after every message (a probe takes at
most JOB_TIMEOUT_SECONDS), so a beat older than both plus a margin means it is stuck.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from services.contract import EnvVar
from services.worker.heartbeat import heartbeat_age, heartbeat_path

MARGIN_SECONDS = 60


def max_age_seconds(environ: Mapping[str, str]) -> float:
    explicit = environ.get(EnvVar.HEALTHCHECK_MAX_AGE_SECONDS)
    if explicit:
        return float(explicit)
    job_timeout = float(environ.get(EnvVar.JOB_TIMEOUT_SECONDS) or 120)
    receive_wait = float(environ.get(EnvVar.RECEIVE_WAIT_SECONDS) or 20)
    return job_timeout + receive_wait + MARGIN_SECONDS


def check(environ: Mapping[str, str]) -> tuple[bool, str]:
    path = heartbeat_path(environ.get(EnvVar.SCRATCH_DIR) or "/tmp")
    age = heartbeat_age(path)
    if age is None:
        return False, f"no heartbeat at {path}"
    limit = max_age_seconds(environ)
    if age > limit:
        return False, f"heartbeat is {age:.0f}s old (limit {limit:.0f}s)"
    return True, f"heartbeat is {age:.0f}s old"


def main() -> int:
    try:
        healthy, detail = check(os.environ)
    except ValueError as error:
        healthy, detail = False, f"bad health check setting: {error}"
    print(detail, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())

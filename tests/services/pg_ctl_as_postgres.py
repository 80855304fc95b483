#!/usr/bin/env python3
"""pg_ctl wrapper used when the tests run as root (as CI does): PostgreSQL refuses to
initialise or start as root, so hand the paths pytest-postgresql chose to the `postgres`
user and run the real pg_ctl as that user. Usage: pg_ctl_as_postgres.py REAL_PG_CTL ARGS...
"""

import itertools
import os
import pwd
import re
import sys
from pathlib import Path

RUN_AS = "postgres"


def give(path: Path, user: pwd.struct_passwd, *, directory: bool) -> None:
    if directory:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.touch(exist_ok=True)
    os.chown(path, user.pw_uid, user.pw_gid)
    # Parents stay root-owned and private except for the right to pass through them.
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def main() -> None:
    real, args = sys.argv[1], sys.argv[2:]
    user = pwd.getpwnam(RUN_AS)
    for flag, value in itertools.pairwise(args):
        if flag in ("-D", "--pgdata"):
            give(Path(value), user, directory=True)
        elif flag in ("-l", "--log"):
            give(Path(value), user, directory=False)
        elif flag in ("-o", "--options"):
            for pwfile in re.findall(r"--pwfile=(\S+)", value):
                os.chown(pwfile, user.pw_uid, user.pw_gid)
    os.execvp("runuser", ["runuser", "-u", RUN_AS, "--", real, *args])


if __name__ == "__main__":
    main()

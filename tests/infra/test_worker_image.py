"""The worker image, reproducible (issue 14, items 1 and 5): the base image is pinned by the
digest of its tag's multi-platform index on one literal FROM line, `make base-image`
(scripts/refresh_base_image.py) checks and moves that pin through the Registry HTTP API v2 —
tested over real HTTP against a small registry served from a thread (bearer-token challenge,
HEAD by tag and by digest, 404) — and the image installs its Python packages from a lock that
pins every distribution with its SHA-256 hashes."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from offline.engine import ROOT
from scripts import refresh_base_image
from scripts.refresh_base_image import PinError, parse_reference, read_pin

WORKER = ROOT / "services" / "worker"
DOCKERFILE = WORKER / "Dockerfile"
SCRIPT = ROOT / "scripts" / "refresh_base_image.py"
TAG = "3.12.8-slim-bookworm"
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
HASHED_ENTRY = re.compile(r"^([a-z0-9][a-z0-9._-]*)==(\S+)((?: --hash=sha256:[0-9a-f]{64})+)$")


def manifest(build: int) -> bytes:
    """An image index's bytes; its digest is their SHA-256, as in a real registry."""
    return json.dumps({"schemaVersion": 2, "manifests": [], "build": build}).encode()


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


FIRST, REBUILT, OTHER = manifest(1), manifest(2), manifest(3)


# -- a registry on a thread --------------------------------------------------------------------


@dataclass
class FakeRegistry:
    """Docker Hub's behaviour in small: anonymous bearer tokens from a realm, manifests by tag
    or digest, 404 for what it does not hold."""

    tags: dict[str, bytes] = field(default_factory=dict)
    old_manifests: list[bytes] = field(default_factory=list)
    challenge: str = "Bearer"
    digest_header: bool = True
    forced_status: int | None = None
    delay_seconds: float = 0.0
    token: str = "anonymous-pull-token"
    base_url: str = ""
    seen: list[dict] = field(default_factory=list)
    token_queries: list[dict] = field(default_factory=list)

    def manifest(self, reference: str) -> bytes | None:
        if reference in self.tags:
            return self.tags[reference]
        known = [*self.tags.values(), *self.old_manifests]
        return next((body for body in known if digest_of(body) == reference), None)


def handler_for(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/token":
                registry.token_queries.append(parse_qs(url.query))
                self._answer(200, json.dumps({"token": registry.token}).encode(), "json")
                return
            self._manifest(send_body=True)

        def do_HEAD(self) -> None:
            self._manifest(send_body=False)

        def _manifest(self, send_body: bool) -> None:
            time.sleep(registry.delay_seconds)
            registry.seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "accept": self.headers.get("Accept", ""),
                    "authorization": self.headers.get("Authorization"),
                }
            )
            if self.headers.get("Authorization") != f"Bearer {registry.token}":
                self.send_response(401)
                realm = f'realm="{registry.base_url}/token"'
                scope = 'service="fake-registry",scope="repository:library/python:pull"'
                self.send_header("WWW-Authenticate", f"{registry.challenge} {realm},{scope}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if registry.forced_status:
                self._answer(registry.forced_status, b"", "json", send_body)
                return
            found = re.fullmatch(r"/v2/library/python/manifests/(.+)", self.path)
            body = registry.manifest(found[1]) if found else None
            if body is None:
                self._answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "json", send_body)
                return
            self._answer(200, body, INDEX_TYPES[0], send_body, digest_of(body))

        def _answer(self, status, body, kind, send_body=True, digest=None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if kind == "json" else kind)
            self.send_header("Content-Length", str(len(body)))
            if digest and registry.digest_header:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

    return Handler


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry(tags={TAG: FIRST})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fake))
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def dockerfile(tmp_path) -> Path:
    """A copy of the worker's Dockerfile pinned at FIRST."""
    text = DOCKERFILE.read_text()
    pinned = re.sub(r"(?m)^FROM \S+$", f"FROM python:{TAG}@{digest_of(FIRST)}", text)
    path = tmp_path / "Dockerfile"
    path.write_text(pinned)
    return path


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def refresh(registry: FakeRegistry, dockerfile: Path, *args: str, timeout: float = 10) -> Run:
    """`scripts/refresh_base_image.py` against the fake registry (in this process)."""
    argv = ["--dockerfile", str(dockerfile), "--registry", registry.base_url]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = refresh_base_image.main([*argv, "--timeout", str(timeout), *args])
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    return Run(code, out.getvalue(), err.getvalue())


def from_line(path: Path) -> str:
    (line,) = [line for line in path.read_text().splitlines() if line.startswith("FROM ")]
    return line


# -- --check -----------------------------------------------------------------------------------


def test_issue14_1_check_passes_when_the_pin_is_what_the_tag_points_at(registry, dockerfile):
    result = refresh(registry, dockerfile, "--check")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"python:{TAG}@{digest_of(FIRST)} is current\n"
    # The anonymous token flow: a 401 challenge, the token from its realm with the service
    # and scope it named, then the same HEAD with the bearer token, asking for an index.
    first, second = registry.seen
    assert (first["method"], first["authorization"]) == ("HEAD", None)
    assert first["path"] == f"/v2/library/python/manifests/{TAG}"
    assert registry.token_queries == [
        {"service": ["fake-registry"], "scope": ["repository:library/python:pull"]}
    ]
    assert second["authorization"] == f"Bearer {registry.token}"
    assert second["method"] == "HEAD"
    accepted = [kind.strip() for kind in second["accept"].split(",")]
    assert accepted[:2] == list(INDEX_TYPES)


def test_issue14_1_check_fails_with_one_line_when_the_tag_has_moved(registry, dockerfile):
    """The tag was rebuilt (e.g. Debian security fixes): a new index digest."""
    registry.tags[TAG] = REBUILT
    registry.old_manifests.append(FIRST)
    result = refresh(registry, dockerfile, "--check")
    assert result.returncode == 1
    assert result.stdout == (
        f"python:{TAG} has moved: pinned {digest_of(FIRST)}, the tag now points at "
        f"{digest_of(REBUILT)} (a rebuilt base, e.g. security fixes): "
        "run `make base-image WRITE=1`\n"
    )
    # The pinned digest was looked up by digest.
    assert registry.seen[-1]["path"] == f"/v2/library/python/manifests/{digest_of(FIRST)}"


def test_issue14_1_check_fails_when_the_pinned_digest_no_longer_resolves(registry, dockerfile):
    registry.tags[TAG] = REBUILT
    result = refresh(registry, dockerfile, "--check")
    assert result.returncode == 1
    assert result.stdout == (
        f"python:{TAG}@{digest_of(FIRST)} no longer resolves in {registry.base_url} "
        f"(python:{TAG} now points at {digest_of(REBUILT)}): run `make base-image WRITE=1`\n"
    )


def test_issue14_1_check_fails_when_the_tag_is_gone(registry, dockerfile):
    registry.tags.clear()
    registry.old_manifests.append(FIRST)
    result = refresh(registry, dockerfile, "--check")
    assert result.returncode == 1
    assert result.stdout == (
        f"python:{TAG} no longer exists in {registry.base_url} (the pinned digest still "
        "resolves): pick a current tag with `make base-image TAG=<tag> WRITE=1`\n"
    )


def test_issue14_1_a_tag_without_digest_fails_the_check_and_write_pins_it(registry, dockerfile):
    dockerfile.write_text(dockerfile.read_text().replace(f"@{digest_of(FIRST)}", ""))
    result = refresh(registry, dockerfile, "--check")
    assert result.returncode == 1
    assert result.stdout == (
        f"python:{TAG} is not pinned by digest (the tag points at {digest_of(FIRST)}): "
        "run `make base-image WRITE=1`\n"
    )
    assert refresh(registry, dockerfile, "--write").returncode == 0
    assert from_line(dockerfile) == f"FROM python:{TAG}@{digest_of(FIRST)}"


def test_issue14_1_a_registry_without_the_digest_header_is_hashed_from_the_manifest(
    registry, dockerfile
):
    """The header is optional in the API: the digest is then the SHA-256 of the bytes."""
    registry.digest_header = False
    result = refresh(registry, dockerfile, "--check")
    assert result.returncode == 0, result.stderr
    assert [seen["method"] for seen in registry.seen] == ["HEAD", "HEAD", "GET"]


# -- --write -----------------------------------------------------------------------------------


def test_issue14_1_write_repins_the_from_line_and_nothing_else(registry, dockerfile):
    registry.tags[TAG] = REBUILT
    before = dockerfile.read_text().splitlines(keepends=True)
    dockerfile.chmod(0o640)
    result = refresh(registry, dockerfile, "--write")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{dockerfile}: python:{TAG}@{digest_of(FIRST)} -> python:{TAG}@{digest_of(REBUILT)}\n"
    )
    after = dockerfile.read_text().splitlines(keepends=True)
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert changed == [
        (f"FROM python:{TAG}@{digest_of(FIRST)}\n", f"FROM python:{TAG}@{digest_of(REBUILT)}\n")
    ]
    assert dockerfile.stat().st_mode & 0o777 == 0o640
    assert list(dockerfile.parent.iterdir()) == [dockerfile]  # no temporary file left
    assert refresh(registry, dockerfile, "--check").returncode == 0


def test_issue14_1_write_with_a_tag_moves_the_pin_to_that_tag(registry, dockerfile):
    registry.tags["3.12.12-slim-bookworm"] = OTHER
    result = refresh(registry, dockerfile, "--write", "--tag", "3.12.12-slim-bookworm")
    assert result.returncode == 0, result.stderr
    assert from_line(dockerfile) == f"FROM python:3.12.12-slim-bookworm@{digest_of(OTHER)}"
    again = refresh(registry, dockerfile, "--write")
    assert again.stdout == (
        f"{dockerfile}: already pinned at python:3.12.12-slim-bookworm@{digest_of(OTHER)}\n"
    )


def test_issue14_1_write_to_a_missing_tag_changes_nothing(registry, dockerfile):
    before = dockerfile.read_bytes()
    result = refresh(registry, dockerfile, "--write", "--tag", "3.99.0-slim-bookworm")
    assert result.returncode == 1
    assert result.stdout == (
        f"python:3.99.0-slim-bookworm does not exist in {registry.base_url}: "
        f"{dockerfile} not changed\n"
    )
    assert dockerfile.read_bytes() == before


def test_issue14_1_a_tag_without_write_is_a_usage_error(registry, dockerfile):
    result = refresh(registry, dockerfile, "--tag", "3.12.12-slim-bookworm")
    assert result.returncode == 2
    assert "--tag moves the pin: use it with --write" in result.stderr
    assert registry.seen == []


# -- failures: one line, exit 2, never a traceback ---------------------------------------------


def one_line_failure(result) -> str:
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    return line


def test_issue14_1_an_unreachable_registry_is_one_line_and_exit_2(dockerfile):
    """The command as a user runs it: one line on stderr, no traceback."""
    with socket_closed() as base_url:
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--dockerfile", str(dockerfile), "--registry", base_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert one_line_failure(result) == (
        f"base image: HEAD {base_url}/v2/library/python/manifests/{TAG}: "
        "[Errno 111] Connection refused"
    )


def test_issue14_1_a_registry_that_does_not_answer_in_time_is_exit_2(registry, dockerfile):
    registry.delay_seconds = 2.0
    started = time.monotonic()
    result = refresh(registry, dockerfile, "--check", timeout=0.5)
    assert time.monotonic() - started < 10
    assert one_line_failure(result) == (
        f"base image: HEAD {registry.base_url}/v2/library/python/manifests/{TAG}: "
        "no answer within 0.5 s"
    )


def test_issue14_1_an_unexpected_answer_is_exit_2_not_a_moved_tag(registry, dockerfile):
    registry.forced_status = 500
    assert one_line_failure(refresh(registry, dockerfile, "--check")) == (
        f"base image: HEAD {registry.base_url}/v2/library/python/manifests/{TAG} answered HTTP 500"
    )


def test_issue14_1_only_anonymous_bearer_tokens_are_asked_for(registry, dockerfile):
    registry.challenge = "Basic"
    assert one_line_failure(refresh(registry, dockerfile, "--check")) == (
        f"base image: {registry.base_url} asks for Basic authentication; only anonymous "
        "bearer tokens are supported"
    )
    assert registry.token_queries == []


def test_issue14_1_a_dockerfile_without_one_from_line_is_exit_2(registry, tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text(f"FROM python:{TAG} AS build\nFROM python:{TAG}\n")
    assert one_line_failure(refresh(registry, path, "--check")) == (
        f"base image: {path}: 2 FROM lines; the pin needs exactly one"
    )


class socket_closed:
    """A local port nothing listens on."""

    def __enter__(self) -> str:
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def __exit__(self, *exc) -> None:
        self.socket.close()


# -- references --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "registry", "repository", "tag"),
    [
        (f"python:{TAG}@{digest_of(FIRST)}", "https://registry-1.docker.io", "library/python", TAG),
        ("docker.io/library/python:3.12", "https://registry-1.docker.io", "library/python", "3.12"),
        ("bitnami/redis:7.4", "https://registry-1.docker.io", "bitnami/redis", "7.4"),
        ("ghcr.io/org/tool:1.2", "https://ghcr.io", "org/tool", "1.2"),
        ("localhost:5000/worker:dev", "https://localhost:5000", "worker", "dev"),
    ],
)
def test_issue14_1_image_references_name_their_registry_and_repository(
    reference, registry, repository, tag
):
    pin = parse_reference(reference)
    assert (pin.registry, pin.repository, pin.tag) == (registry, repository, tag)
    assert pin.reference == reference


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("python", "python: no tag (the pin needs image:tag@sha256:<digest>)"),
        ("localhost:5000/worker", "localhost:5000/worker: no tag"),
        ("python:3.12@sha256:abc", "python:3.12@sha256:abc: the digest is not sha256:<64 hex"),
    ],
)
def test_issue14_1_malformed_references_are_refused(reference, message):
    with pytest.raises(PinError, match=re.escape(message)):
        parse_reference(reference)


# -- the committed Dockerfile and lock ---------------------------------------------------------


def dockerfile_instructions() -> list[str]:
    """Instructions with their continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line.strip() for line in joined.splitlines() if line.strip() and line[0] != "#"]


def test_issue14_1_the_worker_base_is_pinned_by_digest_on_one_literal_from_line():
    (line,) = [i for i in dockerfile_instructions() if i.startswith("FROM ")]
    assert re.fullmatch(r"FROM python:3\.12\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", line)
    pin = read_pin(DOCKERFILE)
    assert (pin.registry, pin.repository) == ("https://registry-1.docker.io", "library/python")
    # Where the first pin came from, and how to re-verify it, is said beside it.
    text = DOCKERFILE.read_text()
    assert "docker pull python:3.12.8-slim-bookworm` on 2026-09-16" in text
    assert "was NOT read from the\n# registry" in text
    assert "Re-verify it with `make base-image`" in text


def test_issue14_5_the_image_installs_only_hash_checked_wheels_from_the_lock():
    instructions = dockerfile_instructions()
    assert "COPY worker/requirements.lock /app/requirements.lock" in instructions
    (install,) = [i for i in instructions if i.startswith("RUN pip install")]
    assert install.split() == [
        "RUN",
        "pip",
        "install",
        "--no-cache-dir",
        "--require-hashes",
        "--no-deps",
        "--only-binary=:all:",
        "-r",
        "/app/requirements.lock",
    ]
    assert not [i for i in instructions if "requirements.txt" in i]
    # ffmpeg stays Debian bookworm's package.
    assert any("apt-get install -y --no-install-recommends ffmpeg" in i for i in instructions)


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    joined = re.sub(r"\s*\\\n\s*", " ", (WORKER / "requirements.lock").read_text())
    entries = {}
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = HASHED_ENTRY.match(line)
        assert found, f"not `name==version --hash=sha256:...`: {line[:80]}"
        assert found[1] not in entries, f"{found[1]} is locked twice"
        entries[found[1]] = (found[2], re.findall(r"sha256:([0-9a-f]{64})", found[3]))
    return entries


def pinned_requirements() -> dict[str, str]:
    pins = {}
    for line in (WORKER / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_issue14_5_the_lock_pins_every_requirement_at_its_version_with_hashes():
    locked = lock_entries()
    refresh_hint = "regenerate services/worker/requirements.lock (command in requirements.txt)"
    for name, version in pinned_requirements().items():
        assert name in locked, f"{name} is not in the lock: {refresh_hint}"
        assert locked[name][0] == version, f"{name}: lock has {locked[name][0]}: {refresh_hint}"
    assert all(hashes and len(set(hashes)) == len(hashes) for _, hashes in locked.values())
    # Native wheels: every file of the version, so the linux/amd64 CPython 3.12 one is there.
    assert len(locked["cffi"][1]) > 20 and len(locked["cryptography"][1]) > 20


def test_issue14_5_the_lock_names_its_refresh_command_for_the_image_platform():
    header = (WORKER / "requirements.lock").read_text().split("\n")[:2]
    command = header[1].removeprefix("#").split()
    assert command[:3] == ["uv", "pip", "compile"]
    assert command[command.index("--python-version") + 1] == "3.12"
    assert command[command.index("--python-platform") + 1].startswith("x86_64-manylinux_")
    assert {"--generate-hashes", "--no-config"} <= set(command)
    assert command[-3:] == [
        "services/worker/requirements.txt",
        "-o",
        "services/worker/requirements.lock",
    ]
    # The same command is written out in requirements.txt for whoever changes a pin.
    assert " ".join(command[3:6]) in re.sub(
        r"\s*\\\n#\s*", " ", (WORKER / "requirements.txt").read_text()
    )


def test_issue14_1_make_base_image_runs_the_check_or_the_write():
    def planned(*variables: str) -> str:
        # Under `make test` this make is a sub-make: without --no-print-directory it adds
        # "make[1]: Entering/Leaving directory" lines around the command.
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", "base-image", *variables],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        (command,) = [line for line in done.stdout.splitlines() if "refresh_base_image.py" in line]
        return command.split("refresh_base_image.py", 1)[1].split()

    assert planned() == ["--check"]
    assert planned("WRITE=1") == ["--write"]
    assert planned("WRITE=1", "TAG=3.12.12-slim-bookworm") == [
        "--write",
        "--tag",
        "3.12.12-slim-bookworm",
    ]

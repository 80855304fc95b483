"""Check, or move, the digest the worker image's base is pinned to.

    python scripts/refresh_base_image.py [--check | --write] [--tag TAG]
        [--dockerfile PATH] [--registry URL] [--timeout SECONDS]

The worker's Dockerfile names its base as one literal `FROM image:tag@sha256:<digest>` line.
This asks the image's registry (Docker Registry HTTP API v2, anonymously) what the tag points
at now, with `HEAD /v2/<repository>/manifests/<tag>`: the registry answers with the digest of
the multi-platform index in `Docker-Content-Digest`. A registry that wants a token answers 401
with a `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge; the anonymous
token comes from that realm.

--check (the default) exits 0 when the pin is what the tag points at, 1 with one line when the
tag has moved (a rebuilt base, e.g. Debian security fixes), the tag is gone, the pinned digest
no longer resolves or the line is not pinned. --write re-pins the FROM line at the tag's
current digest (--tag moves it to another tag first) and changes nothing else in the file.
Exit 2 with one line on stderr when the registry cannot be asked (network, timeout, an
unexpected answer) or the Dockerfile holds no single FROM line. `make base-image` runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.utils import parse_dict_header

DEFAULT_DOCKERFILE = Path(__file__).resolve().parent.parent / "services" / "worker" / "Dockerfile"
DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
DOCKER_HUB_API = "https://registry-1.docker.io"
# A multi-platform tag points at an OCI image index or a Docker manifest list; the two
# single-image types follow so that a single-platform tag still resolves to its own digest.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_TIMEOUT_SECONDS = 15.0
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
FROM_LINE = re.compile(r"^(?P<head>FROM\s+(?:--\S+\s+)*)(?P<ref>\S+)(?P<tail>.*)$", re.I)


class PinError(Exception):
    """The Dockerfile has no pin this tool can read or write."""


class RegistryError(Exception):
    """The registry could not be asked, or gave an answer this tool does not understand."""


@dataclass(frozen=True)
class Pin:
    """The base image of a Dockerfile's FROM line."""

    name: str
    """The image as written, without tag or digest (e.g. `python`)."""
    tag: str
    digest: str | None
    """None when the line names a tag only."""
    registry: str
    """Base URL of the registry's API."""
    repository: str
    """The repository within the registry (Docker Hub's official images live in `library/`)."""

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}" + (f"@{self.digest}" if self.digest else "")

    def at(self, tag: str, digest: str) -> Pin:
        return Pin(self.name, tag, digest, self.registry, self.repository)


def parse_reference(reference: str, registry: str | None = None) -> Pin:
    """`[host/]path:tag[@sha256:...]` as a Pin; `registry` overrides the API base URL."""
    name, _, digest = reference.partition("@")
    if digest and not DIGEST.fullmatch(digest):
        raise PinError(f"{reference}: the digest is not sha256:<64 hex digits>")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= slash:
        raise PinError(f"{reference}: no tag (the pin needs image:tag@sha256:<digest>)")
    name, tag = name[:colon], name[colon + 1 :]
    host, _, path = name.partition("/")
    if not path or not ("." in host or ":" in host or host == "localhost"):
        host, path = "docker.io", name
    if host in DOCKER_HUB_HOSTS:
        api = DOCKER_HUB_API
        path = path if "/" in path else f"library/{path}"
    else:
        api = f"https://{host}"
    return Pin(name, tag, digest or None, (registry or api).rstrip("/"), path)


def from_line_index(lines: list[str], dockerfile: Path) -> int:
    found = [index for index, line in enumerate(lines) if FROM_LINE.match(line)]
    if len(found) != 1:
        raise PinError(f"{dockerfile}: {len(found)} FROM lines; the pin needs exactly one")
    return found[0]


def read_pin(dockerfile: Path, registry: str | None = None) -> Pin:
    try:
        lines = dockerfile.read_text().splitlines()
    except OSError as error:
        raise PinError(f"{dockerfile}: {error.strerror}") from error
    line = FROM_LINE.match(lines[from_line_index(lines, dockerfile)])
    return parse_reference(line["ref"], registry)


def write_pin(dockerfile: Path, pin: Pin) -> None:
    """Replace the FROM line's reference, and nothing else, in one atomic rename."""
    text = dockerfile.read_text()
    lines = text.splitlines(keepends=True)
    index = from_line_index(lines, dockerfile)
    line = FROM_LINE.match(lines[index].rstrip("\n"))
    ending = lines[index][len(lines[index].rstrip("\n")) :]
    lines[index] = f"{line['head']}{pin.reference}{line['tail']}{ending}"
    handle, temporary = tempfile.mkstemp(dir=dockerfile.parent, prefix=".Dockerfile.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write("".join(lines))
        os.chmod(temporary, dockerfile.stat().st_mode & 0o7777)
        os.replace(temporary, dockerfile)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- the registry ------------------------------------------------------------------------------


class Registry:
    """Anonymous, read-only client of one repository in a Registry HTTP API v2."""

    def __init__(
        self,
        base_url: str,
        repository: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.repository = repository
        self.timeout = (min(CONNECT_TIMEOUT_SECONDS, timeout), timeout)
        self.session = session or requests.Session()
        self.token: str | None = None

    def digest(self, reference: str) -> str | None:
        """The digest `reference` (a tag or a digest) resolves to; None when the registry does
        not know it (404)."""
        url = f"{self.base_url}/v2/{self.repository}/manifests/{reference}"
        response = self._authorized("HEAD", url)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(f"HEAD {url} answered HTTP {response.status_code}")
        digest = response.headers.get("Docker-Content-Digest")
        if digest is None:
            # The header is optional in the API; the digest is that of the manifest's bytes.
            body = self._authorized("GET", url)
            if body.status_code != 200:
                raise RegistryError(f"GET {url} answered HTTP {body.status_code}")
            digest = "sha256:" + hashlib.sha256(body.content).hexdigest()
        if not DIGEST.fullmatch(digest):
            raise RegistryError(f"HEAD {url}: unexpected Docker-Content-Digest {digest!r}")
        return digest

    def _authorized(self, method: str, url: str) -> requests.Response:
        response = self._send(method, url)
        if response.status_code == 401 and self.token is None:
            self.token = self._anonymous_token(response.headers.get("WWW-Authenticate", ""))
            response = self._send(method, url)
        return response

    def _send(self, method: str, url: str) -> requests.Response:
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            return self.session.request(method, url, headers=headers, timeout=self.timeout)
        except requests.Timeout as error:
            raise RegistryError(f"{method} {url}: {self._silence()}") from error
        except requests.RequestException as error:
            raise RegistryError(f"{method} {url}: {_reason(error)}") from error

    def _silence(self) -> str:
        return f"no answer within {self.timeout[1]:g} s"

    def _anonymous_token(self, challenge: str) -> str:
        scheme, _, parameters = challenge.partition(" ")
        if scheme.lower() != "bearer":
            raise RegistryError(
                f"{self.base_url} asks for {scheme or 'unnamed'} authentication; "
                "only anonymous bearer tokens are supported"
            )
        fields = parse_dict_header(parameters)
        if not fields.get("realm"):
            raise RegistryError(f"{self.base_url}: the bearer challenge names no realm")
        query = {"scope": fields.get("scope") or f"repository:{self.repository}:pull"}
        if fields.get("service"):
            query["service"] = fields["service"]
        try:
            answer = self.session.get(fields["realm"], params=query, timeout=self.timeout)
        except requests.Timeout as error:
            raise RegistryError(f"token from {fields['realm']}: {self._silence()}") from error
        except requests.RequestException as error:
            raise RegistryError(f"token from {fields['realm']}: {_reason(error)}") from error
        if answer.status_code != 200:
            raise RegistryError(f"token from {fields['realm']}: HTTP {answer.status_code}")
        try:
            body = answer.json()
        except ValueError as error:
            raise RegistryError(f"token from {fields['realm']}: not JSON") from error
        # The token specification names it `token`; OAuth-style servers say `access_token`.
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token from {fields['realm']}: no token in the answer")
        return token


def _reason(error: requests.RequestException) -> str:
    """The innermost cause (e.g. "[Errno 111] Connection refused"), not urllib3's retry story."""
    cause: BaseException = error
    while (cause.__cause__ or cause.__context__) is not None:
        cause = cause.__cause__ or cause.__context__
    return str(cause) or type(cause).__name__


# -- what to say -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinStatus:
    pin: Pin
    tag_digest: str | None
    """What the tag points at now; None when the registry no longer has the tag."""
    pinned_resolves: bool

    @property
    def current(self) -> bool:
        return self.pinned_resolves and self.tag_digest == self.pin.digest


def pin_status(pin: Pin, registry: Registry) -> PinStatus:
    tag_digest = registry.digest(pin.tag)
    if pin.digest is None:
        return PinStatus(pin, tag_digest, pinned_resolves=False)
    resolves = pin.digest == tag_digest or registry.digest(pin.digest) is not None
    return PinStatus(pin, tag_digest, resolves)


def status_of(
    dockerfile: Path, registry: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> PinStatus:
    """Where the Dockerfile's pin stands in its registry (raises PinError, RegistryError)."""
    pin = read_pin(dockerfile, registry)
    return pin_status(pin, Registry(pin.registry, pin.repository, timeout))


def verdict(status: PinStatus) -> tuple[int, str]:
    pin, now = status.pin, status.tag_digest
    tagged = f"{pin.name}:{pin.tag}"
    refresh = "run `make base-image WRITE=1`"
    if pin.digest is None:
        where = f"the tag points at {now}" if now else "the registry does not have the tag"
        return 1, f"{tagged} is not pinned by digest ({where}): {refresh}"
    if not status.pinned_resolves:
        moved = f"{tagged} now points at {now}" if now else f"{tagged} is gone too"
        return 1, f"{pin.reference} no longer resolves in {pin.registry} ({moved}): {refresh}"
    if now is None:
        return 1, (
            f"{tagged} no longer exists in {pin.registry} (the pinned digest still resolves): "
            "pick a current tag with `make base-image TAG=<tag> WRITE=1`"
        )
    if now != pin.digest:
        return 1, (
            f"{tagged} has moved: pinned {pin.digest}, the tag now points at {now} "
            f"(a rebuilt base, e.g. security fixes): {refresh}"
        )
    return 0, f"{pin.reference} is current"


def repin(dockerfile: Path, pin: Pin, registry: Registry, tag: str) -> tuple[int, str]:
    digest = registry.digest(tag)
    if digest is None:
        return 1, f"{pin.name}:{tag} does not exist in {pin.registry}: {dockerfile} not changed"
    moved = pin.at(tag, digest)
    if moved == pin:
        return 0, f"{dockerfile}: already pinned at {pin.reference}"
    write_pin(dockerfile, moved)
    return 0, f"{dockerfile}: {pin.reference} -> {moved.reference}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 unless the pin is current")
    mode.add_argument("--write", action="store_true", help="re-pin at the tag's digest")
    parser.add_argument("--tag", help="with --write: move the pin to this tag")
    parser.add_argument("--dockerfile", type=Path, default=DEFAULT_DOCKERFILE)
    parser.add_argument("--registry", help="API base URL (default: the image's own registry)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS)
    args = parser.parse_args(argv)
    if args.tag and not args.write:
        parser.error("--tag moves the pin: use it with --write")
    try:
        pin = read_pin(args.dockerfile, args.registry)
        registry = Registry(pin.registry, pin.repository, args.timeout)
        if args.write:
            code, line = repin(args.dockerfile, pin, registry, args.tag or pin.tag)
        else:
            code, line = verdict(pin_status(pin, registry))
    except (PinError, RegistryError) as error:
        print(f"base image: {error}", file=sys.stderr)
        return 2
    print(line)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

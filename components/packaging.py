"""Reproducible Lambda deployment packages built from the repository and locked wheels.

Each function's zip holds the service sources it imports plus the contents of the wheels its
dependencies resolve to. The wheels are those `services/lambda-requirements.lock` pins, by
version and SHA-256, for the Lambda runtime (CPython 3.12 on arm64, pip platform
manylinux2014_aarch64): downloaded once into `build/wheels/` and checked against the lock on
every build. Nothing of the interpreter running Pulumi goes in, so two machines build the same
bytes from one commit, and native code (cryptography) is the runtime's, not the build host's.

The archive is byte-for-byte reproducible — entries sorted, timestamps fixed at 1980-01-01 (the
earliest a zip can hold), permissions fixed, one compression level — so the same sources give
the same SHA-256, and `pulumi preview` shows a code change only when there is one.

    python -m components.packaging --download  # fill build/wheels/ from the lock (needs PyPI)
    python -m components.packaging --lock      # resolve lambda-requirements.txt, rewrite the lock
    python -m components.packaging --build     # build the functions' zips, print their hashes
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import email.parser
import fcntl
import functools
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging import tags
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build" / "lambda"
WHEEL_DIR = REPO_ROOT / "build" / "wheels"
REQUIREMENTS_FILE = REPO_ROOT / "services" / "lambda-requirements.txt"
LOCK_FILE = REPO_ROOT / "services" / "lambda-requirements.lock"

# The Lambda runtime the package targets; dependency markers are evaluated for it and only
# wheels it can load are accepted.
TARGET_PYTHON = "3.12"
TARGET_ARCHITECTURE = "arm64"
TARGET_IMPLEMENTATION = "cp"
# manylinux2014 (glibc 2.17) is what AWS documents for Lambda's Python wheels; the runtime's
# own glibc (2.34 on Amazon Linux 2023) is newer, so these load.
TARGET_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64")
_ELF_MACHINE_AARCH64 = 183
# pip's own network timeout per request, and the bound on a whole download.
_PIP_SOCKET_TIMEOUT_SECONDS = 30
DOWNLOAD_TIMEOUT_SECONDS = 300

# What the API function imports: the shared service code, its own handlers and the SQL
# migrations (it checks at start that they are applied). The worker runs in a container and
# is never shipped here.
API_SOURCES = (
    "services/__init__.py",
    "services/contract.py",
    "services/common",
    "services/api",
    "services/migrations",
)
# Roots of the dependency closure; their requirements are followed through the wheels' metadata.
API_DISTRIBUTIONS = ("pg8000", "redis", "cryptography")
# The schema-migration function: the shared code, its handler and the SQL, nothing of the API.
MIGRATE_SOURCES = (
    "services/__init__.py",
    "services/contract.py",
    "services/common",
    "services/migrate",
    "services/migrations",
)
MIGRATE_DISTRIBUTIONS = ("pg8000",)
# The key-delivery function (M8): the shared code and its handler; it verifies CloudFront
# grants and derives title keys with `cryptography`.
KEYS_SOURCES = (
    "services/__init__.py",
    "services/contract.py",
    "services/common",
    "services/keys",
)
KEYS_DISTRIBUTIONS = ("cryptography",)
# The secrets' rotation functions (issue 14, item 7): the shared code and `services/rotation`
# (the four-step protocol and each credential's handler); one archive, one handler per secret.
# The cache token's test step speaks to the cache with `redis`; boto3 is the runtime's.
ROTATION_SOURCES = (
    "services/__init__.py",
    "services/contract.py",
    "services/common",
    "services/rotation",
)
ROTATION_DISTRIBUTIONS = ("redis",)
MIGRATIONS_DIR = "services/migrations"

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644  # regular file, rw-r--r--
# zlib's default: cryptography's 13 MB shared object compresses in 0.5 s instead of 1.7 s at
# level 9, for a zip 0.5 % larger.
_COMPRESS_LEVEL = 6
_SKIPPED_DIRS = frozenset({"__pycache__", "tests", "test", ".pytest_cache", ".mypy_cache"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".pyd", ".so", ".dylib")
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")
# Install-time records (hashes and signatures of files we leave out, the installer's name,
# local paths): an installer writes them, the runtime never reads them.
_DIST_INFO_SKIPPED = frozenset(
    {"RECORD", "RECORD.jws", "RECORD.p7s", "INSTALLER", "REQUESTED", "direct_url.json"}
)
# A wheel's `.data/` trees that are importable; scripts, headers and data files are not.
_IMPORTABLE_DATA = frozenset({"purelib", "platlib"})


class PackagingError(RuntimeError):
    """The package cannot be built as asked (missing source, unlocked or foreign dependency)."""


@dataclass(frozen=True)
class LambdaPackage:
    """A built archive and the hash Lambda reports for it."""

    path: Path
    """Absolute path of the zip."""
    sha256_base64: str
    """Base64 SHA-256 of the zip bytes (Lambda's `CodeSha256` form)."""
    entries: tuple[str, ...]
    """Archive member names, sorted."""
    distributions: tuple[str, ...]
    """`name==version` of every dependency distribution included, sorted."""

    def archive_path(self, root: Path = REPO_ROOT) -> str:
        """The zip's path relative to `root` (the Pulumi project directory) when inside it."""
        try:
            return self.path.relative_to(root).as_posix()
        except ValueError:
            return str(self.path)


@dataclass(frozen=True)
class Pin:
    """One locked distribution: its version and the SHA-256 of every file allowed for it."""

    name: NormalizedName
    version: Version
    hashes: frozenset[str]
    line: str
    """The lock's requirement line, handed to pip to download the file."""


@dataclass(frozen=True)
class Wheel:
    """A cached wheel file whose hash the lock allows."""

    pin: Pin
    path: Path
    sha256: str


@dataclass(frozen=True)
class WheelMember:
    """A file inside a verified wheel, to be copied into an archive."""

    wheel: Path
    wheel_sha256: str
    member: str


def target_environment(
    python_version: str = TARGET_PYTHON, machine: str = "aarch64"
) -> dict[str, str]:
    """PEP 508 marker values of the Lambda runtime (not of the machine building the zip)."""
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "os_name": "posix",
        "extra": "",
    }


def target_tags(python_version: str = TARGET_PYTHON) -> frozenset[tags.Tag]:
    """Every wheel tag the Lambda runtime can load (CPython ABI, abi3, pure Python)."""
    version = tuple(int(part) for part in python_version.split("."))
    interpreter = f"cp{version[0]}{version[1]}"
    platforms = list(TARGET_PLATFORMS)
    return frozenset(
        [
            *tags.cpython_tags(version, abis=[interpreter], platforms=platforms),
            *tags.compatible_tags(version, interpreter=interpreter, platforms=platforms),
        ]
    )


# -- the lock ----------------------------------------------------------------------------


def parse_lock(path: Path = LOCK_FILE) -> dict[NormalizedName, Pin]:
    """The lock's pins by distribution name: `name==version` lines with `--hash=sha256:`
    options (pip's hash-checking format, as `pip-compile --generate-hashes` writes it);
    pins whose marker does not hold on the Lambda runtime are left out."""
    if not path.is_file():
        raise PackagingError(f"lock file {path} does not exist")
    pins: dict[NormalizedName, Pin] = {}
    for line in _logical_lines(path.read_text()):
        pin = _parse_pin(line, path)
        if pin is None:
            continue
        if pin.name in pins:
            raise PackagingError(f"{path}: '{pin.name}' is pinned twice")
        pins[pin.name] = pin
    return pins


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            yield pending.strip()
        pending = ""
    if pending.strip():
        yield pending.strip()


def _parse_pin(line: str, path: Path) -> Pin | None:
    requirement_text, _, options = line.partition("--hash=")
    options = "--hash=" + options if options else ""
    try:
        requirement = Requirement(requirement_text.strip())
    except InvalidRequirement as error:
        raise PackagingError(f"{path}: cannot read '{line}': {error}") from None
    if requirement.marker is not None and not requirement.marker.evaluate(target_environment()):
        return None
    specifiers = list(requirement.specifier)
    if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
        raise PackagingError(f"{path}: '{requirement}' is not pinned to one version with ==")
    hashes = set()
    for option in options.split():
        algorithm, _, digest = option.removeprefix("--hash=").partition(":")
        if not option.startswith("--hash=") or algorithm != "sha256" or len(digest) != 64:
            raise PackagingError(f"{path}: '{option}' in '{requirement.name}' is no sha256 hash")
        hashes.add(digest.lower())
    if not hashes:
        raise PackagingError(f"{path}: '{requirement.name}' has no --hash=sha256: option")
    return Pin(
        name=canonicalize_name(requirement.name),
        version=Version(specifiers[0].version),
        hashes=frozenset(hashes),
        line=line,
    )


# -- the wheel cache ---------------------------------------------------------------------


def locked_wheels(
    lock: Path = LOCK_FILE, wheel_dir: Path = WHEEL_DIR, *, download: bool = True
) -> dict[NormalizedName, Wheel]:
    """The cached wheel of every pin in `lock`, each verified against its hashes; files not
    yet cached are downloaded first (once, under a lock, when `download`)."""
    pins = parse_lock(lock)
    found, missing = _find_cached(pins, wheel_dir)
    if missing and download:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(wheel_dir / ".lock"):
            # Another process may have filled the cache while this one waited.
            found, missing = _find_cached(pins, wheel_dir)
            if missing:
                _download(missing, wheel_dir)
                found, missing = _find_cached(pins, wheel_dir)
    if missing:
        names = ", ".join(f"{p.name}=={p.version}" for p in missing)
        raise PackagingError(
            f"no wheel in {wheel_dir} for {names} from {lock}; "
            "run `python -m components.packaging --download` where PyPI is reachable"
        )
    return found


def _find_cached(
    pins: Mapping[NormalizedName, Pin], wheel_dir: Path
) -> tuple[dict[NormalizedName, Wheel], list[Pin]]:
    candidates: dict[tuple[NormalizedName, Version], list[Path]] = {}
    for path in sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else ():
        try:
            name, version, _, _ = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        candidates.setdefault((name, version), []).append(path)
    found: dict[NormalizedName, Wheel] = {}
    missing: list[Pin] = []
    for pin in pins.values():
        paths = candidates.get((pin.name, pin.version), [])
        wheels = [_verified(pin, path) for path in paths]
        if wheels:
            found[pin.name] = wheels[0]
        else:
            missing.append(pin)
    return found, missing


def _verified(pin: Pin, path: Path) -> Wheel:
    digest = file_sha256(path)
    if digest not in pin.hashes:
        raise PackagingError(
            f"{path}: SHA-256 {digest} is not a hash the lock allows for "
            f"{pin.name}=={pin.version}; the file was altered or comes from elsewhere. "
            "Delete it and run `python -m components.packaging --download`"
        )
    _, _, _, wheel_tags = parse_wheel_filename(path.name)
    if not wheel_tags & target_tags():
        raise PackagingError(
            f"{path.name} is built for {', '.join(sorted(map(str, wheel_tags)))}, not for the "
            f"Lambda runtime (CPython {TARGET_PYTHON}, {' or '.join(TARGET_PLATFORMS)})"
        )
    return Wheel(pin=pin, path=path, sha256=digest)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    # Test processes under pytest-xdist fill an empty cache at the same moment; one downloads.
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(pins: Sequence[Pin], wheel_dir: Path) -> None:
    """Download `pins` with pip (hash-checked) into a private directory, then move each file
    into `wheel_dir` by an atomic rename, so no reader ever sees half a wheel."""
    staging = Path(tempfile.mkdtemp(dir=wheel_dir, prefix=".download-"))
    try:
        requirements = staging / "requirements.txt"
        requirements.write_text("".join(f"{pin.line}\n" for pin in pins))
        _pip(
            "download",
            "--require-hashes",
            "--no-deps",
            "--only-binary=:all:",
            *_target_options(),
            "--dest",
            str(staging),
            "--requirement",
            str(requirements),
        )
        for path in sorted(staging.glob("*.whl")):
            os.replace(path, wheel_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _target_options() -> list[str]:
    options = ["--python-version", TARGET_PYTHON, "--implementation", TARGET_IMPLEMENTATION]
    for platform in TARGET_PLATFORMS:
        options += ["--platform", platform]
    return options


def _pip(*arguments: str) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "--no-input",
        "--timeout",
        str(_PIP_SOCKET_TIMEOUT_SECONDS),
        *arguments,
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise PackagingError(
            f"pip {arguments[0]} did not finish within {DOWNLOAD_TIMEOUT_SECONDS} s"
        ) from None
    if result.returncode != 0:
        raise PackagingError(
            f"pip {arguments[0]} failed (exit {result.returncode}):\n{result.stderr.strip()}"
        )


# -- wheels' contents and the dependency closure -----------------------------------------


@dataclass(frozen=True)
class _WheelContents:
    name: str
    version: str
    requires: tuple[str, ...]
    members: dict[str, str]
    """Archive name -> member name in the wheel."""


_CONTENTS: dict[str, _WheelContents] = {}
"""Wheels already read by this process, by SHA-256 (verified before every use)."""


def wheel_contents(wheel: Wheel) -> _WheelContents:
    if wheel.sha256 not in _CONTENTS:
        _CONTENTS[wheel.sha256] = _read_wheel(wheel.path)
    return _CONTENTS[wheel.sha256]


def _read_wheel(path: Path) -> _WheelContents:
    with zipfile.ZipFile(path) as archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        metadata_names = [n for n in names if _is_top_level_dist_info(n, "METADATA")]
        if len(metadata_names) != 1:
            raise PackagingError(f"{path.name} has no single .dist-info/METADATA")
        metadata = email.parser.BytesParser().parsebytes(archive.read(metadata_names[0]))
        members: dict[str, str] = {}
        for name in names:
            archive_name = _archive_name(path, name)
            if archive_name is None:
                continue
            if archive_name.endswith(_NATIVE_SUFFIXES) or ".so." in archive_name:
                with archive.open(name) as member:
                    _check_native(path, name, member.read(20))
            members[archive_name] = name
    return _WheelContents(
        name=metadata["Name"],
        version=metadata["Version"],
        requires=tuple(metadata.get_all("Requires-Dist") or ()),
        members=members,
    )


def _is_top_level_dist_info(name: str, file: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == file


def _archive_name(wheel: Path, member: str) -> str | None:
    """Where a wheel member goes in the function's zip (the installed layout), or None."""
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts:
        raise PackagingError(f"{wheel.name}: member '{member}' leaves the archive root")
    parts = path.parts
    if parts[0].endswith(".data"):
        if len(parts) < 3 or parts[1] not in _IMPORTABLE_DATA:
            return None
        parts = parts[2:]
    if "__pycache__" in parts or parts[-1].endswith((".pyc", ".pyo")):
        return None
    if parts[0].endswith(".dist-info") and parts[-1] in _DIST_INFO_SKIPPED:
        return None
    return PurePosixPath(*parts).as_posix()


def _check_native(wheel: Path, member: str, header: bytes) -> None:
    """Native code must be an ELF shared object for 64-bit little-endian aarch64."""
    is_elf = header[:4] == b"\x7fELF"
    machine = int.from_bytes(header[18:20], "little") if len(header) >= 20 else None
    if not (is_elf and header[4] == 2 and header[5] == 1 and machine == _ELF_MACHINE_AARCH64):
        kind = f"ELF machine {machine}" if is_elf else "not an ELF shared object"
        raise PackagingError(
            f"{wheel.name}: native file {member} is {kind}, not aarch64 code for the Lambda runtime"
        )


def resolve_closure(
    roots: Iterable[str],
    wheels: Mapping[NormalizedName, Wheel],
    *,
    environment: Mapping[str, str] | None = None,
    lock: Path = LOCK_FILE,
) -> list[Wheel]:
    """The locked wheels `roots` need at runtime, following each wheel's Requires-Dist whose
    marker holds on the Lambda runtime. A needed distribution missing from the lock, or
    locked at a version its dependant does not accept, is an error."""
    env = dict(environment or target_environment())
    seen: dict[NormalizedName, Wheel] = {}
    pending: list[tuple[Requirement, str]] = [(_requirement(root), "the package") for root in roots]
    while pending:
        requirement, needed_by = pending.pop()
        name = canonicalize_name(requirement.name)
        wheel = wheels.get(name)
        if wheel is None:
            raise PackagingError(
                f"distribution '{name}' is needed by {needed_by} but {lock} does not pin it; "
                f"add it to {REQUIREMENTS_FILE.name} and run `python -m components.packaging "
                "--lock`"
            )
        if not requirement.specifier.contains(wheel.pin.version, prereleases=True):
            raise PackagingError(
                f"{needed_by} needs {requirement} but {lock} pins {name}=={wheel.pin.version}"
            )
        if name in seen:
            continue
        seen[name] = wheel
        contents = wheel_contents(wheel)
        for text in contents.requires:
            dependency = _requirement(text)
            # With `extra` empty, requirements of optional extras never hold.
            if dependency.marker is None or dependency.marker.evaluate(env):
                pending.append((dependency, f"{contents.name}=={contents.version}"))
    return [seen[name] for name in sorted(seen)]


@functools.cache
def _requirement(text: str) -> Requirement:
    """A parsed requirement, parsed once per process: `packaging`'s PEP 508 parser takes about
    7 ms per requirement, which each archive build would otherwise pay for every wheel's
    Requires-Dist again."""
    return Requirement(text)


# -- sources -----------------------------------------------------------------------------


def source_files(root: Path, includes: Sequence[str]) -> dict[str, Path]:
    """Archive name -> file for each include (a file or a directory walked recursively),
    leaving out caches, compiled files, tests and hidden files."""
    files: dict[str, Path] = {}
    for include in includes:
        base = root / include
        if base.is_file():
            files[PurePosixPath(include).as_posix()] = base
        elif base.is_dir():
            for path in sorted(base.rglob("*")):
                relative = path.relative_to(root)
                if path.is_file() and _keep_source(relative):
                    files[relative.as_posix()] = path
        else:
            raise PackagingError(f"source '{include}' does not exist under {root}")
    return files


def _keep_source(relative: Path) -> bool:
    parts = relative.parts
    if any(p in _SKIPPED_DIRS or p.startswith(".") for p in parts):
        return False
    name = parts[-1]
    if name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py":
        return False
    return not name.endswith(_SKIPPED_SUFFIXES)


# -- the zip -----------------------------------------------------------------------------

Content = Path | WheelMember

_ZIPPED: dict[tuple[tuple[object, ...], ...], bytes] = {}
"""Archives built by this process, by what they were built from: evaluating the program
again in one process (the offline plan, the tests) reuses the bytes instead of compressing
every file again; any change to a source file's size or modification time, or to a wheel's
hash, builds anew."""


def zip_bytes(files: Mapping[str, Content]) -> bytes:
    """A deterministic zip of `files` (archive name -> source file or wheel member)."""
    key = tuple(_identity(name, files[name]) for name in sorted(files))
    if key not in _ZIPPED:
        _ZIPPED[key] = _zip(files)
    return _ZIPPED[key]


def _identity(name: str, content: Content) -> tuple[object, ...]:
    if isinstance(content, WheelMember):
        return name, content.wheel_sha256, content.member
    stat = content.stat()
    return name, str(content), stat.st_mtime_ns, stat.st_size


def _zip(files: Mapping[str, Content]) -> bytes:
    buffer = io.BytesIO()
    with contextlib.ExitStack() as stack, zipfile.ZipFile(buffer, "w") as archive:
        opened: dict[Path, zipfile.ZipFile] = {}
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.create_system = 3  # Unix, so external_attr carries the mode below
            info.external_attr = _FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, _read(files[name], opened, stack), compresslevel=_COMPRESS_LEVEL)
    return buffer.getvalue()


def _read(
    content: Content, opened: dict[Path, zipfile.ZipFile], stack: contextlib.ExitStack
) -> bytes:
    if not isinstance(content, WheelMember):
        return content.read_bytes()
    if content.wheel not in opened:
        opened[content.wheel] = stack.enter_context(zipfile.ZipFile(content.wheel))
    return opened[content.wheel].read(content.member)


def sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


# -- packages ----------------------------------------------------------------------------


def build_package(
    name: str,
    *,
    root: Path = REPO_ROOT,
    out_dir: Path = BUILD_DIR,
    sources: Sequence[str] = API_SOURCES,
    distributions: Sequence[str] = API_DISTRIBUTIONS,
    environment: Mapping[str, str] | None = None,
    lock: Path = LOCK_FILE,
    wheel_dir: Path = WHEEL_DIR,
) -> LambdaPackage:
    """Build `out_dir/<name>.zip` from `sources` under `root` plus the wheels of the locked
    dependency closure of `distributions`; the file is rewritten only when its bytes change."""
    files: dict[str, Content] = dict(source_files(root, sources))
    wheels = resolve_closure(
        distributions, locked_wheels(lock, wheel_dir), environment=environment, lock=lock
    )
    included = []
    for wheel in wheels:
        contents = wheel_contents(wheel)
        included.append(f"{contents.name}=={contents.version}")
        for archive_name, member in contents.members.items():
            if archive_name in files:
                raise PackagingError(
                    f"'{archive_name}' is provided twice (by the sources or another wheel, "
                    f"and by {wheel.path.name})"
                )
            files[archive_name] = WheelMember(wheel.path, wheel.sha256, member)
    data = zip_bytes(files)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    if not target.is_file() or target.read_bytes() != data:
        _write_atomically(target, data)
    return LambdaPackage(
        path=target.resolve(),
        sha256_base64=sha256_base64(data),
        entries=tuple(sorted(files)),
        distributions=tuple(included),
    )


def build_api_package(*, root: Path = REPO_ROOT, out_dir: Path = BUILD_DIR) -> LambdaPackage:
    """The API function's package: `services` API code, its database/cache clients and
    cryptography (the CloudFront signer)."""
    return build_package("api", root=root, out_dir=out_dir)


def build_migrate_package(*, root: Path = REPO_ROOT, out_dir: Path = BUILD_DIR) -> LambdaPackage:
    """The schema-migration function's package: migrations, their runner and pg8000."""
    return build_package(
        "migrate",
        root=root,
        out_dir=out_dir,
        sources=MIGRATE_SOURCES,
        distributions=MIGRATE_DISTRIBUTIONS,
    )


def build_keys_package(*, root: Path = REPO_ROOT, out_dir: Path = BUILD_DIR) -> LambdaPackage:
    """The key-delivery function's package: the shared code, `services/keys` and cryptography."""
    return build_package(
        "keys",
        root=root,
        out_dir=out_dir,
        sources=KEYS_SOURCES,
        distributions=KEYS_DISTRIBUTIONS,
    )


def build_rotation_package(*, root: Path = REPO_ROOT, out_dir: Path = BUILD_DIR) -> LambdaPackage:
    """The rotation functions' package: the shared code, `services/rotation` and redis."""
    return build_package(
        "rotation",
        root=root,
        out_dir=out_dir,
        sources=ROTATION_SOURCES,
        distributions=ROTATION_DISTRIBUTIONS,
    )


def migrations_fingerprint(root: Path = REPO_ROOT) -> str:
    """SHA-256 over the migration files' names and contents: changes exactly when the
    schema the services expect changes."""
    digest = hashlib.sha256()
    files = sorted((root / MIGRATIONS_DIR).glob("*.sql"))
    if not files:
        raise PackagingError(f"no migrations under {root / MIGRATIONS_DIR}")
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _write_atomically(target: Path, data: bytes) -> None:
    # Two programs evaluating at once (tests, previews) must never see a half-written zip.
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- refreshing the lock -----------------------------------------------------------------

_LOCK_HEADER = """\
# Every wheel the Lambda functions' zips are built from, for the Lambda runtime: CPython {python}
# on {architecture} (pip platform {platform}). Each file is pinned by version and SHA-256;
# components/packaging.py downloads them into build/wheels/ (pip --require-hashes) and checks
# them against these hashes on every build.
#
# Generated from {requirements} (the top-level pins); do not edit by hand.
# To refresh after changing a pin there (needs PyPI):
#     python -m components.packaging --lock
# which resolves the pins for the runtime with
#     pip download --only-binary=:all: --platform {platform} --python-version {python}
#         --implementation {implementation} -r {requirements}
# and records the SHA-256 of every file pip chose.
"""


def write_lock(requirements: Path = REQUIREMENTS_FILE, lock: Path = LOCK_FILE) -> None:
    """Resolve `requirements` for the Lambda runtime with pip and write `lock` with the
    version and SHA-256 of every wheel chosen."""
    with tempfile.TemporaryDirectory() as directory:
        _pip(
            "download",
            "--only-binary=:all:",
            *_target_options(),
            "--dest",
            directory,
            "--requirement",
            str(requirements),
        )
        lock.write_text(_lock_text(requirements, sorted(Path(directory).glob("*.whl"))))


def _lock_text(requirements: Path, paths: Sequence[Path]) -> str:
    top_level = {
        canonicalize_name(Requirement(line).name)
        for line in _logical_lines(requirements.read_text())
    }
    entries: dict[NormalizedName, tuple[str, str, str]] = {}
    needed_by: dict[NormalizedName, set[str]] = {}
    for path in paths:
        name, version, _, _ = parse_wheel_filename(path.name)
        contents = _read_wheel(path)
        entries[name] = (contents.name, str(version), file_sha256(path))
        for text in contents.requires:
            dependency = _requirement(text)
            if dependency.marker is None or dependency.marker.evaluate(target_environment()):
                needed_by.setdefault(canonicalize_name(dependency.name), set()).add(name)
    header = _LOCK_HEADER.format(
        python=TARGET_PYTHON,
        architecture=TARGET_ARCHITECTURE,
        platform=TARGET_PLATFORMS[0],
        implementation=TARGET_IMPLEMENTATION,
        requirements=requirements.relative_to(REPO_ROOT).as_posix()
        if requirements.is_relative_to(REPO_ROOT)
        else requirements.name,
    )
    blocks = []
    for name in sorted(entries):
        display, version, digest = entries[name]
        via = sorted(needed_by.get(name, set()))
        if name in top_level:
            via.insert(0, f"-r {requirements.name}")
        blocks.append(
            f"{display}=={version} \\\n    --hash=sha256:{digest}\n    # via {', '.join(via)}\n"
        )
    return header + "\n" + "".join(blocks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.packaging", description=__doc__.split("\n\n")[0]
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--download", action="store_true", help="fill build/wheels/ from the lock (needs PyPI)"
    )
    action.add_argument(
        "--lock", action="store_true", help="re-resolve lambda-requirements.txt, rewrite the lock"
    )
    action.add_argument(
        "--build", action="store_true", help="build the functions' zips and print their hashes"
    )
    arguments = parser.parse_args(argv)
    try:
        if arguments.lock:
            write_lock()
        elif arguments.download:
            for wheel in locked_wheels().values():
                print(f"{wheel.path.relative_to(REPO_ROOT)}  sha256:{wheel.sha256}")
        else:
            for build in (
                build_api_package,
                build_migrate_package,
                build_keys_package,
                build_rotation_package,
            ):
                package = build()
                print(f"{package.archive_path()}  {package.sha256_base64}")
    except PackagingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

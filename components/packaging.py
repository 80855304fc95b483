"""Reproducible Lambda deployment packages built from the repository and installed wheels.

The API function's zip holds the service sources it imports plus the pure-Python
distributions it needs, copied file by file from this interpreter's site-packages as each
distribution's RECORD lists them (found with `importlib.metadata`). Nothing is downloaded at
deploy time. The archive is byte-for-byte reproducible — entries sorted, timestamps fixed at
1980-01-01 (the earliest a zip can hold), permissions fixed, one compression level — so the
same sources give the same SHA-256, and `pulumi preview` shows a code change only when there
is one.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import io
import os
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build" / "lambda"

# The Lambda runtime the package targets; dependency markers are evaluated for it.
TARGET_PYTHON = "3.12"
TARGET_ARCHITECTURE = "arm64"

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
# Roots of the dependency closure; their requirements are followed through the metadata.
API_DISTRIBUTIONS = ("pg8000", "redis")
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
MIGRATIONS_DIR = "services/migrations"

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644  # regular file, rw-r--r--
_COMPRESS_LEVEL = 9
_SKIPPED_DIRS = frozenset({"__pycache__", "tests", "test", ".pytest_cache", ".mypy_cache"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".pyd", ".so", ".dylib")
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")
# Install-time records (hashes of files we leave out, the installer's name, local paths).
_DIST_INFO_SKIPPED = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})


class PackagingError(RuntimeError):
    """The package cannot be built as asked (missing source, native or absent dependency)."""


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


def resolve_distributions(
    roots: Iterable[str],
    *,
    environment: Mapping[str, str] | None = None,
) -> list[metadata.Distribution]:
    """The installed distributions `roots` need at runtime, following non-extra requirements
    whose markers hold in the target environment. Missing ones are an error."""
    env = dict(environment or target_environment())
    seen: dict[str, metadata.Distribution] = {}
    pending = list(roots)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise PackagingError(
                f"distribution '{name}' is needed by the API function but is not installed; "
                "install requirements.txt into the interpreter that runs Pulumi"
            ) from None
        seen[name] = dist
        for text in dist.requires or ():
            requirement = Requirement(text)
            # With `extra` empty, requirements of optional extras never hold.
            if requirement.marker is None or requirement.marker.evaluate(env):
                pending.append(requirement.name)
    return [seen[n] for n in sorted(seen)]


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


def distribution_files(dist: metadata.Distribution) -> dict[str, Path]:
    """Archive name -> installed file for one pure-Python distribution, from its RECORD."""
    name = f"{dist.metadata['Name']}=={dist.version}"
    wheel = dist.read_text("WHEEL") or ""
    if "Root-Is-Purelib: true" not in wheel:
        raise PackagingError(
            f"{name} is not a pure-Python wheel (Root-Is-Purelib is not true); "
            "it cannot be copied into a package for another platform"
        )
    if dist.files is None:
        raise PackagingError(f"{name} has no RECORD; reinstall it with pip")
    files: dict[str, Path] = {}
    for record in dist.files:
        relative = PurePosixPath(str(record).replace(os.sep, "/"))
        if ".." in relative.parts:
            continue  # console scripts installed next to the interpreter, not importable
        if relative.name.endswith(_NATIVE_SUFFIXES):
            raise PackagingError(
                f"{name} ships a native module ({relative}); only pure-Python "
                "distributions can be packaged"
            )
        if "__pycache__" in relative.parts or relative.name.endswith((".pyc", ".pyo")):
            continue
        if relative.parts[0].endswith(".dist-info") and relative.name in _DIST_INFO_SKIPPED:
            continue
        located = Path(str(dist.locate_file(record)))
        if not located.is_file():
            raise PackagingError(f"{name}: file {relative} listed in RECORD is missing")
        files[relative.as_posix()] = located
    return files


_ZIPPED: dict[tuple[tuple[str, str, int, int], ...], bytes] = {}
"""Archives built by this process, by what they were built from: evaluating the program
again in one process (the offline plan, the tests) reuses the bytes instead of compressing
every file again; any change to a file's size or modification time builds anew."""


def zip_bytes(files: Mapping[str, Path]) -> bytes:
    """A deterministic zip of `files` (archive name -> path)."""
    key = tuple(_file_identity(name, files[name]) for name in sorted(files))
    if key not in _ZIPPED:
        _ZIPPED[key] = _zip(files)
    return _ZIPPED[key]


def _file_identity(name: str, path: Path) -> tuple[str, str, int, int]:
    stat = path.stat()
    return name, str(path), stat.st_mtime_ns, stat.st_size


def _zip(files: Mapping[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.create_system = 3  # Unix, so external_attr carries the mode below
            info.external_attr = _FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name].read_bytes(), compresslevel=_COMPRESS_LEVEL)
    return buffer.getvalue()


def sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def build_package(
    name: str,
    *,
    root: Path = REPO_ROOT,
    out_dir: Path = BUILD_DIR,
    sources: Sequence[str] = API_SOURCES,
    distributions: Sequence[str] = API_DISTRIBUTIONS,
    environment: Mapping[str, str] | None = None,
) -> LambdaPackage:
    """Build `out_dir/<name>.zip` from `sources` under `root` plus the dependency closure of
    `distributions`; the file is rewritten only when its bytes change."""
    files = source_files(root, sources)
    dists = resolve_distributions(distributions, environment=environment)
    for dist in dists:
        for archive_name, path in distribution_files(dist).items():
            if archive_name in files:
                raise PackagingError(
                    f"'{archive_name}' is provided twice (by the sources and "
                    f"by {dist.metadata['Name']})"
                )
            files[archive_name] = path
    data = zip_bytes(files)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    if not target.is_file() or target.read_bytes() != data:
        _write_atomically(target, data)
    return LambdaPackage(
        path=target.resolve(),
        sha256_base64=sha256_base64(data),
        entries=tuple(sorted(files)),
        distributions=tuple(f"{d.metadata['Name']}=={d.version}" for d in dists),
    )


def build_api_package(*, root: Path = REPO_ROOT, out_dir: Path = BUILD_DIR) -> LambdaPackage:
    """The API function's package: `services` API code and its database/cache clients."""
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

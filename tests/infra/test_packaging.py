"""Lambda packaging (A4): reproducible zips of the service sources and the locked wheels.

The dependencies come from the wheel files `services/lambda-requirements.lock` pins for the
Lambda runtime (CPython 3.12, arm64), never from the interpreter running the build. The first
test run downloads them into build/wheels/ (PyPI); later runs only verify their hashes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from components.packaging import (
    API_SOURCES,
    LOCK_FILE,
    REPO_ROOT,
    REQUIREMENTS_FILE,
    WHEEL_DIR,
    PackagingError,
    _lock_text,
    build_api_package,
    build_keys_package,
    build_migrate_package,
    build_package,
    build_rotation_package,
    locked_wheels,
    migrations_fingerprint,
    parse_lock,
    resolve_closure,
    source_files,
    target_environment,
)

API_CLOSURE = {
    "asn1crypto==1.5.1",
    "cffi==2.1.1",
    "cryptography==48.0.0",
    "pg8000==1.31.6",
    "pycparser==3.12",
    "python-dateutil==2.9.0.post0",
    "redis==8.2.0",
    "scramp==1.5.0",
    "six==1.17.0",
}
MIGRATE_CLOSURE = {
    "asn1crypto==1.5.1",
    "pg8000==1.31.6",
    "python-dateutil==2.9.0.post0",
    "scramp==1.5.0",
    "six==1.17.0",
}
KEYS_CLOSURE = {"cffi==2.1.1", "cryptography==48.0.0", "pycparser==3.12"}
RUST_BINDINGS = "cryptography/hazmat/bindings/_rust.abi3.so"
ELF_MACHINE_AARCH64 = 183
ELF_MACHINE_X86_64 = 62


@pytest.fixture(scope="module")
def wheels():
    """The locked wheels, downloaded into build/wheels/ on first use."""
    return locked_wheels()


@pytest.fixture(scope="module")
def package(wheels, tmp_path_factory):
    return build_api_package(out_dir=tmp_path_factory.mktemp("lambda"))


@pytest.fixture
def services_copy(tmp_path):
    """A private copy of `services/` to change without touching the repository."""
    shutil.copytree(
        REPO_ROOT / "services", tmp_path / "services", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


@pytest.fixture
def wheel_dir_copy(wheels, tmp_path):
    """A private copy of the wheel cache to tamper with."""
    copy = tmp_path / "wheels"
    copy.mkdir()
    for wheel in wheels.values():
        shutil.copy2(wheel.path, copy / wheel.path.name)
    return copy


def elf_header(data: bytes) -> tuple[bytes, int, int, int]:
    """Magic, class (2 = 64-bit), data encoding (1 = little-endian) and e_machine."""
    return data[:4], data[4], data[5], int.from_bytes(data[18:20], "little")


def fake_elf(machine: int) -> bytes:
    return b"\x7fELF" + bytes([2, 1, 1]) + bytes(11) + machine.to_bytes(2, "little") + bytes(44)


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    tag: str,
    files: dict[str, bytes],
    requires: tuple[str, ...] = (),
) -> Path:
    """A minimal wheel file (METADATA, WHEEL and `files`)."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    path = directory / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
        archive.writestr(f"{dist_info}/METADATA", metadata)
        archive.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n")
        archive.writestr(f"{dist_info}/RECORD", "")
    return path


def write_lock(path: Path, wheels: list[Path]) -> Path:
    lines = []
    for wheel in wheels:
        name, version = wheel.name.split("-")[:2]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}\n")
    path.write_text("".join(lines))
    return path


def lock_without(tmp_path: Path, name: str) -> Path:
    """The repository's lock with one distribution's entry left out."""
    text = LOCK_FILE.read_text()
    start = text.index(f"\n{name}==") + 1
    end = text.index("\n", text.index("# via", start)) + 1
    lock = tmp_path / "lambda-requirements.lock"
    lock.write_text(text[:start] + text[end:])
    return lock


# -- reproducibility ---------------------------------------------------------------------


def test_two_builds_give_identical_bytes_and_hash_a4(package, tmp_path):
    again = build_api_package(out_dir=tmp_path)
    assert again.sha256_base64 == package.sha256_base64
    assert again.path.read_bytes() == package.path.read_bytes()


def test_a4_another_environment_builds_the_same_archives_from_the_same_commit(package, tmp_path):
    """A build whose interpreter has python-dateutil 4 installed (which would shadow the
    runtime's botocore, wanting < 3) gives byte-identical API and migration archives."""
    fake = tmp_path / "site"
    (fake / "dateutil").mkdir(parents=True)
    (fake / "dateutil" / "__init__.py").write_text("__version__ = '4.0.0'\n")
    dist_info = fake / "python_dateutil-4.0.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: python-dateutil\nVersion: 4.0.0\nRequires-Dist: tzdata\n"
    )
    (dist_info / "RECORD").write_text("dateutil/__init__.py,,\n")
    script = textwrap.dedent(
        f"""
        import importlib.metadata, sys
        from pathlib import Path
        from components.packaging import build_api_package, build_migrate_package
        print(importlib.metadata.version("python-dateutil"))
        out = Path({str(tmp_path / "out")!r})
        print(build_api_package(out_dir=out).sha256_base64)
        print(build_migrate_package(out_dir=out).sha256_base64)
        """
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(REPO_ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    installed, api_hash, migrate_hash = result.stdout.split()
    assert installed == "4.0.0"
    assert api_hash == package.sha256_base64
    assert migrate_hash == build_migrate_package(out_dir=tmp_path / "here").sha256_base64


def test_hash_is_base64_sha256_of_the_zip_bytes(package):
    digest = hashlib.sha256(package.path.read_bytes()).digest()
    assert package.sha256_base64 == base64.b64encode(digest).decode()


def test_changed_source_changes_the_hash(services_copy, tmp_path):
    out = tmp_path / "out"
    before = build_package("api", root=services_copy, out_dir=out)
    handler = services_copy / "services" / "api" / "handler.py"
    handler.write_text(handler.read_text() + "\n# changed\n")
    after = build_package("api", root=services_copy, out_dir=out)
    assert after.sha256_base64 != before.sha256_base64
    assert after.entries == before.entries


def test_file_timestamps_do_not_change_the_hash(services_copy, tmp_path):
    first = build_package("api", root=services_copy, out_dir=tmp_path / "a")
    (services_copy / "services" / "api" / "app.py").touch()
    second = build_package("api", root=services_copy, out_dir=tmp_path / "b")
    assert second.sha256_base64 == first.sha256_base64


def test_zip_entries_are_sorted_with_fixed_time_mode_and_compression(package):
    with zipfile.ZipFile(package.path) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) == list(package.entries)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}


def test_zip_is_rewritten_only_when_its_bytes_change(wheels, tmp_path):
    first = build_api_package(out_dir=tmp_path)
    stamp = first.path.stat().st_mtime_ns
    second = build_api_package(out_dir=tmp_path)
    assert second.path.stat().st_mtime_ns == stamp


# -- what the archives hold --------------------------------------------------------------


def test_archive_holds_the_handler_the_shared_code_and_the_migrations(package):
    entries = set(package.entries)
    assert {
        "services/__init__.py",
        "services/api/handler.py",
        "services/api/__init__.py",
        "services/common/db.py",
        "services/migrations/001_videos_and_jobs.sql",
    } <= entries


def test_api_archive_holds_pg8000_redis_cryptography_and_their_locked_dependencies(package):
    entries = set(package.entries)
    assert {
        "pg8000/__init__.py",
        "redis/__init__.py",
        "cryptography/__init__.py",
        RUST_BINDINGS,
        "_cffi_backend.cpython-312-aarch64-linux-gnu.so",
        "pycparser/__init__.py",
        "scramp/__init__.py",
        "asn1crypto/__init__.py",
        "dateutil/__init__.py",
        "six.py",
    } <= entries
    assert set(package.distributions) == API_CLOSURE
    # Metadata stays importable (`importlib.metadata.version("redis")` works in the function).
    assert "redis-8.2.0.dist-info/METADATA" in entries


def test_a4_archive_holds_python_dateutil_2_from_the_lock_not_the_installed_one(package):
    with zipfile.ZipFile(package.path) as archive:
        metadata = archive.read("python_dateutil-2.9.0.post0.dist-info/METADATA").decode()
    assert "\nVersion: 2.9.0.post0\n" in metadata
    assert not [e for e in package.entries if e.startswith("python_dateutil-4")]
    assert "tzdata/__init__.py" not in package.entries


def test_m8_cryptography_native_code_is_aarch64_elf_for_the_lambda_runtime(package):
    with zipfile.ZipFile(package.path) as archive:
        rust = archive.read(RUST_BINDINGS)
        cffi = archive.read("_cffi_backend.cpython-312-aarch64-linux-gnu.so")
    assert elf_header(rust) == (b"\x7fELF", 2, 1, ELF_MACHINE_AARCH64)
    assert elf_header(cffi) == (b"\x7fELF", 2, 1, ELF_MACHINE_AARCH64)


def test_archive_leaves_out_tests_caches_the_worker_and_install_records(package):
    for entry in package.entries:
        parts = entry.split("/")
        assert "__pycache__" not in parts and not entry.endswith((".pyc", ".pyo")), entry
        assert not entry.startswith(("services/worker", "tests/")), entry
        assert not parts[0].endswith(".data"), entry
        # Wheels are copied whole (cryptography ships `_rust/test_support.pyi`); only the
        # service sources lose their tests.
        assert not (parts[0] == "services" and parts[-1].startswith("test_")), entry
        assert parts[-1] not in (
            "RECORD",
            "RECORD.jws",
            "RECORD.p7s",
            "INSTALLER",
            "REQUESTED",
            "direct_url.json",
        ), entry


def test_migrate_archive_holds_its_runner_and_only_pg8000s_closure(wheels, tmp_path):
    migrate = build_migrate_package(out_dir=tmp_path)
    assert set(migrate.distributions) == MIGRATE_CLOSURE
    assert {"services/migrate/handler.py", "services/migrations/001_videos_and_jobs.sql"} <= set(
        migrate.entries
    )
    assert not [
        e for e in migrate.entries if e.startswith(("services/api/", "cryptography", "redis"))
    ]


def test_m8_keys_archive_holds_the_key_service_and_only_cryptographys_closure(
    wheels, services_copy, tmp_path
):
    keys = services_copy / "services" / "keys"
    keys.mkdir(exist_ok=True)
    (keys / "__init__.py").write_text("")
    (keys / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    package = build_keys_package(root=services_copy, out_dir=tmp_path / "out")
    assert package.path == (tmp_path / "out" / "keys.zip").resolve()
    assert set(package.distributions) == KEYS_CLOSURE
    entries = set(package.entries)
    assert {
        "services/__init__.py",
        "services/contract.py",
        "services/common/content_keys.py",
        "services/keys/handler.py",
        RUST_BINDINGS,
    } <= entries
    assert not [
        e for e in entries if e.startswith(("services/api/", "services/migrations/", "pg8000"))
    ]


def test_i14_7_rotation_archive_holds_the_protocol_its_handlers_and_only_redis(
    wheels, services_copy, tmp_path
):
    rotation = services_copy / "services" / "rotation"
    (rotation / "cache_token.py").write_text("def handler(event, context):\n    return None\n")
    package = build_rotation_package(root=services_copy, out_dir=tmp_path / "out")
    assert package.path == (tmp_path / "out" / "rotation.zip").resolve()
    assert set(package.distributions) == {"redis==8.2.0"}
    entries = set(package.entries)
    assert {
        "services/__init__.py",
        "services/contract.py",
        "services/common/redis_client.py",
        "services/common/aws.py",
        "services/rotation/__init__.py",
        "services/rotation/protocol.py",
        "services/rotation/cache_token.py",
        "redis/__init__.py",
    } <= entries
    assert not [
        e
        for e in entries
        if e.startswith(("services/api/", "services/keys/", "services/migrations/", "pg8000"))
        or e.startswith(("cryptography", "services/worker/"))
    ]


def test_pure_python_dependencies_import_from_the_extracted_archive(wheels, tmp_path):
    """The migration zip, unpacked as Lambda does, imports pg8000 and dateutil from itself
    with their locked versions (no site-packages: `-I -S`)."""
    package = build_migrate_package(out_dir=tmp_path / "out")
    task = tmp_path / "task"
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(task)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import importlib.metadata as m, "
        "dateutil, pg8000, scramp; print(m.version('pg8000'), m.version('python-dateutil'), "
        "dateutil.__file__.startswith(sys.argv[1]), pg8000.__file__.startswith(sys.argv[1]))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(task)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["1.31.6", "2.9.0.post0", "True", "True"]


def test_sources_skip_pycache_tests_hidden_files_and_compiled_modules(services_copy):
    api = services_copy / "services" / "api"
    (api / "__pycache__").mkdir()
    (api / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
    (api / "test_handler.py").write_text("")
    (api / "conftest.py").write_text("")
    (api / ".DS_Store").write_bytes(b"\0")
    (api / "tests").mkdir()
    (api / "tests" / "helpers.py").write_text("")
    files = source_files(services_copy, API_SOURCES)
    assert not [
        n
        for n in files
        if n.startswith("services/api/")
        and n.rsplit("/", 1)[-1]
        in ("handler.cpython-311.pyc", "test_handler.py", "conftest.py", ".DS_Store", "helpers.py")
    ]
    assert "services/api/handler.py" in files


# -- the lock and the closure ------------------------------------------------------------


def test_a4_lock_pins_every_top_level_requirement_at_its_version_with_a_hash():
    pins = parse_lock()
    top_level = [
        line.split("==")
        for line in REQUIREMENTS_FILE.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert {name for name, _ in top_level} == {
        "pg8000",
        "redis",
        "cryptography",
        "python-dateutil",
    }
    for name, version in top_level:
        assert str(pins[name].version) == version
    # The runtime's botocore requires python-dateutil < 3; the zip's copy shadows the runtime's.
    assert pins["python-dateutil"].version.major == 2
    assert {f"{pin.name}=={pin.version}" for pin in pins.values()} == API_CLOSURE
    assert all(len(pin.hashes) == 1 for pin in pins.values())


def test_lock_is_what_the_refresh_command_writes_for_the_cached_wheels(wheels):
    """The committed lock matches `python -m components.packaging --lock`'s output for the
    wheels it pins (header, hashes, `# via`): nobody edited it by hand."""
    paths = sorted(wheel.path for wheel in wheels.values())
    assert _lock_text(REQUIREMENTS_FILE, paths) == LOCK_FILE.read_text()


def test_closure_follows_requires_dist_for_the_lambda_python(wheels):
    closure = resolve_closure(["pg8000", "redis"], wheels)
    assert {f"{w.pin.name}=={w.pin.version}" for w in closure} == API_CLOSURE - KEYS_CLOSURE


def test_closure_evaluates_markers_for_the_target_not_this_interpreter(wheels):
    # redis needs async-timeout only below Python 3.11.3; the lock (for 3.12) has no such pin.
    old = {**target_environment(), "python_full_version": "3.11.0", "python_version": "3.11"}
    with pytest.raises(
        PackagingError, match=r"distribution 'async-timeout' is needed by redis==8\.2\.0 but"
    ):
        resolve_closure(["redis"], wheels, environment=old)


def test_a_lock_missing_a_needed_distribution_is_refused(wheels, tmp_path):
    lock = lock_without(tmp_path, "scramp")
    assert "scramp" not in parse_lock(lock)
    with pytest.raises(
        PackagingError,
        match=r"distribution 'scramp' is needed by pg8000==1\.31\.6 but .* does not pin it",
    ):
        build_package(
            "migrate",
            out_dir=tmp_path / "out",
            sources=("services/__init__.py",),
            distributions=("pg8000",),
            lock=lock,
        )


def test_a_locked_version_its_dependant_rejects_is_refused(tmp_path):
    app = make_wheel(tmp_path, "app", "1.0", "py3-none-any", {"app.py": b""}, ("lib>=2",))
    lib = make_wheel(tmp_path, "lib", "1.0", "py3-none-any", {"lib.py": b""})
    lock = write_lock(tmp_path / "lock", [app, lib])
    with pytest.raises(PackagingError, match=r"app==1\.0 needs lib>=2 but .* pins lib==1\.0"):
        build_package(
            "x",
            out_dir=tmp_path / "out",
            sources=(),
            distributions=("app",),
            lock=lock,
            wheel_dir=tmp_path,
        )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("six==1.17.0\n", "'six' has no --hash=sha256: option"),
        ("six>=1.17 --hash=sha256:" + "0" * 64 + "\n", "'six>=1.17' is not pinned"),
        ("six==1.17.0 --hash=md5:abc\n", "'--hash=md5:abc' in 'six' is no sha256 hash"),
    ],
)
def test_a_lock_entry_without_one_version_and_a_sha256_is_refused(tmp_path, line, message):
    lock = tmp_path / "lock"
    lock.write_text(line)
    with pytest.raises(PackagingError, match=message):
        parse_lock(lock)


def test_a_pin_whose_marker_fails_on_the_runtime_is_left_out(tmp_path):
    lock = tmp_path / "lock"
    digest = "0" * 64
    lock.write_text(
        f"async-timeout==5.0.1 ; python_full_version < '3.11.3' --hash=sha256:{digest}\n"
        f"six==1.17.0 \\\n    --hash=sha256:{digest}\n    # via python-dateutil\n"
    )
    assert set(parse_lock(lock)) == {"six"}


# -- the wheel cache ---------------------------------------------------------------------


def test_a4_a_tampered_cached_wheel_is_refused_naming_the_file(wheel_dir_copy, tmp_path):
    six = next(wheel_dir_copy.glob("six-*.whl"))
    with six.open("ab") as stream:
        stream.write(b"\0")
    with pytest.raises(PackagingError) as raised:
        build_package("api", out_dir=tmp_path / "out", wheel_dir=wheel_dir_copy)
    message = str(raised.value)
    assert str(six) in message
    assert "is not a hash the lock allows for six==1.17.0" in message


def test_a4_a_wheel_for_another_platform_is_refused(tmp_path):
    wheel = make_wheel(
        tmp_path, "native", "1.0", "cp312-cp312-manylinux2014_x86_64", {"native.so": b""}
    )
    lock = write_lock(tmp_path / "lock", [wheel])
    with pytest.raises(
        PackagingError,
        match=r"native-1\.0-cp312-cp312-manylinux2014_x86_64\.whl is built for "
        r"cp312-cp312-manylinux2014_x86_64, not for the Lambda runtime",
    ):
        build_package(
            "x",
            out_dir=tmp_path / "out",
            sources=(),
            distributions=("native",),
            lock=lock,
            wheel_dir=tmp_path,
        )


@pytest.mark.parametrize(
    ("member", "data", "kind"),
    [
        ("native/_impl.abi3.so", fake_elf(ELF_MACHINE_X86_64), "ELF machine 62"),
        ("native/_impl.dylib", b"\xcf\xfa\xed\xfe" + bytes(28), "not an ELF shared object"),
        ("native.libs/libz-1a2b.so.1.3", fake_elf(ELF_MACHINE_X86_64), "ELF machine 62"),
    ],
)
def test_a4_foreign_native_code_in_an_aarch64_tagged_wheel_is_refused(tmp_path, member, data, kind):
    wheel = make_wheel(
        tmp_path, "native", "1.0", "cp312-abi3-manylinux2014_aarch64", {member: data}
    )
    lock = write_lock(tmp_path / "lock", [wheel])
    with pytest.raises(PackagingError, match=f"native file {member} is {kind}, not aarch64"):
        build_package(
            "x",
            out_dir=tmp_path / "out",
            sources=(),
            distributions=("native",),
            lock=lock,
            wheel_dir=tmp_path,
        )


def test_aarch64_native_code_in_an_aarch64_wheel_is_packaged(tmp_path):
    wheel = make_wheel(
        tmp_path,
        "native",
        "1.0",
        "cp312-abi3-manylinux2014_aarch64",
        {"native/_impl.abi3.so": fake_elf(ELF_MACHINE_AARCH64), "native/__init__.py": b""},
    )
    lock = write_lock(tmp_path / "lock", [wheel])
    package = build_package(
        "x",
        out_dir=tmp_path / "out",
        sources=(),
        distributions=("native",),
        lock=lock,
        wheel_dir=tmp_path,
    )
    assert package.entries == (
        "native-1.0.dist-info/METADATA",
        "native-1.0.dist-info/WHEEL",
        "native/__init__.py",
        "native/_impl.abi3.so",
    )
    assert package.distributions == ("native==1.0",)


def test_missing_wheels_without_download_name_the_command_that_fetches_them(tmp_path):
    with pytest.raises(
        PackagingError, match=r"no wheel in .* for .*cryptography==48\.0\.0.*--download"
    ):
        locked_wheels(wheel_dir=tmp_path / "empty", download=False)


def test_a4_an_empty_cache_is_filled_once_by_concurrent_builds(tmp_path):
    """Two processes starting on an empty cache (pytest-xdist workers) both get the
    hash-checked wheel; no half-written file or staging directory is left. Needs PyPI."""
    lock = tmp_path / "lock"
    pins = parse_lock()
    lock.write_text(f"{pins['six'].line}\n")
    cache = tmp_path / "cache"
    script = (
        "import sys; from pathlib import Path; from components.packaging import locked_wheels; "
        "w = locked_wheels(Path(sys.argv[1]), Path(sys.argv[2]))['six']; print(w.sha256)"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(lock), str(cache)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert {out.strip() for out, _ in outputs} == set(pins["six"].hashes)
    assert sorted(p.name for p in cache.iterdir()) == [".lock", "six-1.17.0-py2.py3-none-any.whl"]


def test_default_output_and_wheel_cache_are_ignored_by_git():
    result = subprocess.run(
        ["git", "check-ignore", "build/lambda/api.zip", "build/wheels/six-1.17.0-py3-none-any.whl"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.split() == [
        "build/lambda/api.zip",
        "build/wheels/six-1.17.0-py3-none-any.whl",
    ]
    assert WHEEL_DIR == REPO_ROOT / "build" / "wheels"


# -- errors and paths --------------------------------------------------------------------


def test_a_missing_source_is_an_error(tmp_path):
    with pytest.raises(PackagingError, match="source 'services/api' does not exist"):
        build_package("api", root=tmp_path, out_dir=tmp_path / "out", sources=("services/api",))


def test_a_source_shadowing_a_dependency_is_an_error(wheels, tmp_path):
    (tmp_path / "six.py").write_text("")
    with pytest.raises(PackagingError, match=r"'six\.py' is provided twice"):
        build_package(
            "x",
            root=tmp_path,
            out_dir=tmp_path / "out",
            sources=("six.py",),
            distributions=("six",),
        )


def test_archive_path_is_relative_to_the_project(wheels, tmp_path):
    inside = build_package(
        "x",
        root=REPO_ROOT,
        out_dir=REPO_ROOT / "build" / "lambda-test",
        sources=("services/__init__.py",),
        distributions=(),
    )
    try:
        assert inside.archive_path() == "build/lambda-test/x.zip"
    finally:
        shutil.rmtree(REPO_ROOT / "build" / "lambda-test")
    outside = build_package(
        "x", root=REPO_ROOT, out_dir=tmp_path, sources=("services/__init__.py",), distributions=()
    )
    assert outside.archive_path() == str(Path(tmp_path).resolve() / "x.zip")


def test_r1_migrations_fingerprint_changes_exactly_when_a_migration_file_does(services_copy):
    """It triggers the deploy-time migration run: a new or edited SQL file must change it,
    anything else under services/ must not."""
    before = migrations_fingerprint(services_copy)
    assert before == migrations_fingerprint(REPO_ROOT)
    (services_copy / "services/api/app.py").write_text("# changed\n")
    assert migrations_fingerprint(services_copy) == before
    (services_copy / "services/migrations/099_extra.sql").write_text("SELECT 1;\n")
    added = migrations_fingerprint(services_copy)
    assert added != before
    (services_copy / "services/migrations/099_extra.sql").write_text("SELECT 2;\n")
    assert migrations_fingerprint(services_copy) not in (before, added)


def test_r1_no_migrations_is_an_error(tmp_path):
    (tmp_path / "services/migrations").mkdir(parents=True)
    with pytest.raises(PackagingError, match="no migrations under"):
        migrations_fingerprint(tmp_path)

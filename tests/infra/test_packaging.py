"""Lambda packaging (A4): reproducible zips of the API sources and pure-Python dependencies."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import shutil
import zipfile
from pathlib import Path

import pytest

from components.packaging import (
    API_SOURCES,
    REPO_ROOT,
    PackagingError,
    build_api_package,
    build_package,
    distribution_files,
    migrations_fingerprint,
    resolve_distributions,
    source_files,
    target_environment,
)

API_CLOSURE = {"asn1crypto", "pg8000", "python-dateutil", "redis", "scramp", "six"}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_api_package(out_dir=tmp_path_factory.mktemp("lambda"))


@pytest.fixture
def services_copy(tmp_path):
    """A private copy of `services/` to change without touching the repository."""
    shutil.copytree(
        REPO_ROOT / "services", tmp_path / "services", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def test_two_builds_give_identical_bytes_and_hash_a4(package, tmp_path):
    again = build_api_package(out_dir=tmp_path)
    assert again.sha256_base64 == package.sha256_base64
    assert again.path.read_bytes() == package.path.read_bytes()


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


def test_archive_holds_the_handler_the_shared_code_and_the_migrations(package):
    entries = set(package.entries)
    assert {
        "services/__init__.py",
        "services/api/handler.py",
        "services/api/__init__.py",
        "services/common/db.py",
        "services/migrations/001_videos_and_jobs.sql",
    } <= entries


def test_archive_holds_pg8000_redis_and_their_dependencies(package):
    entries = set(package.entries)
    assert {
        "pg8000/__init__.py",
        "redis/__init__.py",
        "scramp/__init__.py",
        "asn1crypto/__init__.py",
        "dateutil/__init__.py",
        "six.py",
    } <= entries
    assert {d.split("==")[0] for d in package.distributions} == API_CLOSURE
    # Metadata stays importable (`importlib.metadata.version("redis")` works in the function).
    version = metadata.version("redis")
    assert f"redis-{version}.dist-info/METADATA" in entries


def test_archive_leaves_out_tests_caches_the_worker_and_install_records(package):
    for entry in package.entries:
        parts = entry.split("/")
        assert "__pycache__" not in parts and not entry.endswith((".pyc", ".pyo")), entry
        assert not entry.startswith(("services/worker", "tests/")), entry
        assert not parts[-1].startswith("test_"), entry
        assert parts[-1] not in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"), entry


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


def test_zip_entries_are_sorted_with_fixed_time_mode_and_compression(package):
    with zipfile.ZipFile(package.path) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) == list(package.entries)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}


def test_zip_is_rewritten_only_when_its_bytes_change(tmp_path):
    first = build_api_package(out_dir=tmp_path)
    stamp = first.path.stat().st_mtime_ns
    second = build_api_package(out_dir=tmp_path)
    assert second.path.stat().st_mtime_ns == stamp


def test_closure_follows_requirements_for_the_lambda_python():
    names = {d.metadata["Name"].lower() for d in resolve_distributions(["pg8000", "redis"])}
    assert names == API_CLOSURE


def test_closure_evaluates_markers_for_the_target_not_this_interpreter():
    # redis needs async-timeout only below Python 3.11.3; that wheel is not installed here.
    old = {**target_environment(), "python_full_version": "3.11.0", "python_version": "3.11"}
    with pytest.raises(PackagingError, match="distribution 'async-timeout' is needed"):
        resolve_distributions(["redis"], environment=old)


def test_a_native_distribution_is_refused():
    with pytest.raises(PackagingError, match=r"grpcio==.* is not a pure-Python wheel"):
        distribution_files(metadata.distribution("grpcio"))


def test_a_missing_source_is_an_error(tmp_path):
    with pytest.raises(PackagingError, match="source 'services/api' does not exist"):
        build_package("api", root=tmp_path, out_dir=tmp_path / "out", sources=("services/api",))


def test_a_source_shadowing_a_dependency_is_an_error(tmp_path):
    (tmp_path / "six.py").write_text("")
    with pytest.raises(PackagingError, match=r"'six\.py' is provided twice"):
        build_package(
            "x",
            root=tmp_path,
            out_dir=tmp_path / "out",
            sources=("six.py",),
            distributions=("six",),
        )


def test_archive_path_is_relative_to_the_project(tmp_path):
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


def test_default_output_directory_is_ignored_by_git():
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "build/" in ignored


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

"""A4, W3, R1, G5, M9: the environment each component writes (the API function's, the worker
container's with what ECS injects, the migration function's, key delivery's) is the
environment its service reads; A7, R2: the API Gateway model is the handler's own request rules (services/contract.py).

Each whole-stack run's API function, worker container and migration function environment is
fed into the settings loader of the service that reads it, through a mapping that records
every variable the loader looks at.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from components.api_routes import create_video_schema
from components.packaging import API_SOURCES, KEYS_SOURCES, MIGRATE_SOURCES
from offline.engine import ROOT, ProgramRun
from services.api.http import ApiError
from services.api.validation import parse_create, parse_list_query, parse_parts
from services.common.settings import (
    SettingsError,
    load_api_settings,
    load_keys_settings,
    load_migrate_settings,
    load_worker_settings,
)
from services.contract import (
    API_DB_USER,
    API_ENVIRONMENT,
    CREATE_VIDEO_SCHEMA,
    KEYS_ENVIRONMENT,
    LIMIT_MAX,
    MIGRATE_ENVIRONMENT,
    UPLOAD_PARTS_SCHEMA,
    WORKER_DB_USER,
    WORKER_ENVIRONMENT,
    EnvVar,
    ServiceEnvironment,
    parse_ladder,
)
from services.worker import healthcheck

FUNCTION = "aws:lambda/function:Function"
PUBLIC_KEY_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ECS_INJECTED = "value-injected-by-ecs"


class RecordingEnviron(Mapping[str, str]):
    """An environment that remembers every name looked up in it, set or not."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def platform(run: ProgramRun) -> dict[str, str]:
    """What Lambda and ECS set themselves in every function and task."""
    return {EnvVar.AWS_REGION: run.region}


def api_environment(run: ProgramRun) -> dict[str, str]:
    return dict(run.one(FUNCTION, "api-function").inputs["environment"]["variables"])


def migrate_environment(run: ProgramRun) -> dict[str, str]:
    return dict(run.one(FUNCTION, "schema-function").inputs["environment"]["variables"])


def keys_environment(run: ProgramRun) -> dict[str, str]:
    return dict(run.one(FUNCTION, "delivery-function").inputs["environment"]["variables"])


def worker_environment(run: ProgramRun) -> dict[str, str]:
    """The container's plain variables plus those ECS injects from Secrets Manager."""
    definitions = run.one(TASK_DEFINITION).inputs["containerDefinitions"]
    (container,) = json.loads(definitions) if isinstance(definitions, str) else definitions
    variables = {e["name"]: e["value"] for e in container["environment"]}
    injected = {s["name"]: ECS_INJECTED for s in container.get("secrets", [])}
    assert not variables.keys() & injected.keys()
    return variables | injected


# Variable -> (where the loaded settings keep it, how the written text reads as that value).
Field = tuple[Callable[[Any], Any], Callable[[str], Any]]


def _text(value: str) -> str:
    return value


def database_fields(database: Callable[[Any], Any]) -> dict[str, Field]:
    return {
        EnvVar.DB_HOST: (lambda s: database(s).host, _text),
        EnvVar.DB_PORT: (lambda s: database(s).port, int),
        EnvVar.DB_NAME: (lambda s: database(s).name, _text),
        EnvVar.DB_SSL: (lambda s: database(s).ssl_mode, _text),
        EnvVar.DB_IAM_USER: (lambda s: database(s).iam_user, _text),
        EnvVar.DB_SECRET_ARN: (lambda s: database(s).secret_arn, _text),
        EnvVar.LOG_LEVEL: (lambda s: s.log_level, _text),
    }


def common_fields(common: Callable[[Any], Any]) -> dict[str, Field]:
    return {
        **database_fields(lambda s: common(s).database),
        EnvVar.LOG_LEVEL: (lambda s: common(s).log_level, _text),
        EnvVar.REDIS_HOST: (lambda s: common(s).redis.host, _text),
        EnvVar.REDIS_PORT: (lambda s: common(s).redis.port, int),
        EnvVar.REDIS_TLS: (lambda s: common(s).redis.tls, lambda text: text == "true"),
        EnvVar.REDIS_AUTH_SECRET_ARN: (lambda s: common(s).redis.auth_secret_arn, _text),
        EnvVar.REDIS_AUTH_TOKEN: (lambda s: common(s).redis.auth_token, _text),
        EnvVar.STREAM_NAME: (lambda s: common(s).stream_name, _text),
        EnvVar.CACHE_TTL_SECONDS: (lambda s: common(s).cache_ttl_seconds, int),
    }


API_FIELDS: dict[str, Field] = {
    **common_fields(lambda s: s.common),
    EnvVar.INGEST_BUCKET: (lambda s: s.uploads.ingest_bucket, _text),
    EnvVar.UPLOAD_MAX_BYTES: (lambda s: s.uploads.max_bytes, int),
    EnvVar.UPLOAD_CONTENT_TYPES: (lambda s: s.uploads.content_types, lambda t: tuple(t.split(","))),
    EnvVar.UPLOAD_URL_TTL_SECONDS: (lambda s: s.uploads.url_ttl_seconds, int),
    # M8: the stacks have a delivery tier, so the API signs playback grants.
    EnvVar.PLAYBACK_DOMAIN: (lambda s: s.playback.domain, _text),
    EnvVar.PLAYBACK_KEY_PAIR_ID: (lambda s: s.playback.key_pair_id, _text),
    EnvVar.PLAYBACK_SIGNING_SECRET_ARN: (lambda s: s.playback.signing_secret_arn, _text),
    EnvVar.PLAYBACK_GRANT_SECONDS: (lambda s: s.playback.grant_seconds, int),
}


def _public_numbers(pems: Mapping[str, Any]) -> dict[str, Any]:
    return {key_id: key.public_numbers() for key_id, key in pems.items()}


KEYS_FIELDS: dict[str, Field] = {
    EnvVar.CONTENT_KEY_SECRET_ARN: (lambda s: s.content_key_secret_arn, _text),
    # The key group's public keys: the same key ids, the same RSA keys.
    EnvVar.PLAYBACK_PUBLIC_KEYS: (
        lambda s: _public_numbers(s.public_keys),
        lambda text: _public_numbers(
            {key_id: load_pem_public_key(pem.encode()) for key_id, pem in json.loads(text).items()}
        ),
    ),
    EnvVar.LOG_LEVEL: (lambda s: s.log_level, _text),
}
MIGRATE_FIELDS = database_fields(lambda s: s.database)
WORKER_FIELDS: dict[str, Field] = {
    **common_fields(lambda s: s.common),
    EnvVar.JOBS_QUEUE_URL: (lambda s: s.jobs_queue_url, _text),
    EnvVar.DEAD_LETTER_QUEUE_URL: (lambda s: s.dead_letter_queue_url, _text),
    EnvVar.MAX_RECEIVE_COUNT: (lambda s: s.max_receive_count, int),
    EnvVar.JOB_TIMEOUT_SECONDS: (lambda s: s.job_timeout_seconds, int),
    EnvVar.VISIBILITY_TIMEOUT_SECONDS: (lambda s: s.visibility_timeout_seconds, int),
    EnvVar.STOP_TIMEOUT_SECONDS: (lambda s: s.stop_timeout_seconds, float),
    EnvVar.CONTENT_KEY_SECRET_ARN: (lambda s: s.content_key_secret_arn, _text),
    EnvVar.SCRATCH_DIR: (lambda s: s.scratch_dir, PurePosixPath),
    EnvVar.MEDIA_ROOT: (lambda s: s.media_root, PurePosixPath),
    EnvVar.INGEST_BUCKET: (lambda s: s.media.ingest_bucket, _text),
    EnvVar.MEDIA_BUCKET: (lambda s: s.media.media_bucket, _text),
    EnvVar.UPLOAD_MAX_BYTES: (lambda s: s.media.max_source_bytes, int),
    EnvVar.TRANSCODE_LADDER: (lambda s: s.media.ladder, parse_ladder),
    EnvVar.SEGMENT_SECONDS: (lambda s: s.media.segment_seconds, int),
    EnvVar.SOURCE_MAX_DURATION_SECONDS: (lambda s: s.media.max_duration_seconds, int),
    EnvVar.DELETE_SOURCE_AFTER_PROCESSING: (
        lambda s: s.media.delete_source_after_processing,
        lambda text: text == "true",
    ),
    EnvVar.TRANSFER_CONCURRENCY: (lambda s: s.media.transfer_concurrency, int),
}


def load_worker_with_health_check(environ: Mapping[str, str]) -> Any:
    """The worker container runs two readers of its environment: the worker and its health
    check (every 30 s, `python -m services.worker.healthcheck`)."""
    settings = load_worker_settings(environ)
    healthcheck.check(environ)
    healthcheck.max_age_seconds(environ)
    return settings


SERVICES = {
    "api": (api_environment, load_api_settings, API_ENVIRONMENT, API_FIELDS),
    "worker": (
        worker_environment,
        load_worker_with_health_check,
        WORKER_ENVIRONMENT,
        WORKER_FIELDS,
    ),
    "migrate": (migrate_environment, load_migrate_settings, MIGRATE_ENVIRONMENT, MIGRATE_FIELDS),
    "keys": (keys_environment, load_keys_settings, KEYS_ENVIRONMENT, KEYS_FIELDS),
}


@pytest.fixture(params=["dev", "prod"])
def run(request, dev_run, prod_run) -> ProgramRun:
    return {"dev": dev_run, "prod": prod_run}[request.param]


@pytest.mark.parametrize("service", SERVICES)
def test_a4_w3_r1_each_written_variable_lands_in_the_settings_as_written(run, service):
    """A4 (API function), W3 (worker container), R1 (migration function)."""
    written_by, load, _, fields = SERVICES[service]
    written = written_by(run)
    settings = load(RecordingEnviron(written | platform(run)))
    unmapped = sorted(written.keys() - fields.keys())
    assert not unmapped, f"{service}: written but kept nowhere in its settings: {unmapped}"
    for name, value in written.items():
        kept, read_as = fields[name]
        assert kept(settings) == read_as(value), f"{service}: {name}={value!r}"


@pytest.mark.parametrize("service", SERVICES)
def test_a4_w3_r1_the_service_reads_every_variable_written_and_no_other(run, service):
    written_by, load, contract, _ = SERVICES[service]
    written = written_by(run)
    environ = RecordingEnviron(written | platform(run))
    load(environ)
    assert written.keys() <= environ.read, f"{service}: written, never read"
    assert environ.read <= contract.variables, f"{service}: read, not in services/contract.py"


@pytest.mark.parametrize("service", SERVICES)
def test_a4_w3_r1_every_required_variable_and_one_database_login_are_written(run, service):
    written_by, _, contract, _ = SERVICES[service]
    written = written_by(run)
    assert contract.required <= written.keys()
    logins = [group for group in contract.db_logins if set(group) <= written.keys()]
    # Key delivery reads no database: it has no login to write (M9).
    wanted = 1 if contract.db_logins else 0
    assert len(logins) == wanted, f"{service}: database logins written: {logins}"
    assert not written.keys() & {EnvVar.AWS_REGION, EnvVar.AWS_DEFAULT_REGION}


def test_g5_each_service_logs_in_as_its_own_role_and_only_migrations_as_master(run):
    """D5/G5: the role names the infrastructure writes are the contract's."""
    assert api_environment(run)[EnvVar.DB_IAM_USER] == API_DB_USER
    assert worker_environment(run)[EnvVar.DB_IAM_USER] == WORKER_DB_USER
    assert EnvVar.DB_IAM_USER not in migrate_environment(run)
    assert EnvVar.DB_SECRET_ARN not in api_environment(run) | worker_environment(run)


def minimal_environment(contract: ServiceEnvironment) -> dict[str, str]:
    """The required variables with valid values and the master-secret login (needs no
    region, so the loader also looks at `AWS_DEFAULT_REGION`)."""
    values = {
        EnvVar.MEDIA_ROOT: "/mnt/media",
        EnvVar.MAX_RECEIVE_COUNT: "5",
        EnvVar.DB_SECRET_ARN: "arn:aws:secretsmanager:eu-central-1:123456789012:secret:db",
        EnvVar.PLAYBACK_PUBLIC_KEYS: json.dumps({"K2JCJMDEHXQW5F": PUBLIC_KEY_PEM}),
    }
    return {name: values.get(name, "x") for name in contract.required | {EnvVar.DB_SECRET_ARN}}


@pytest.mark.parametrize("service", SERVICES)
def test_a4_w3_r1_the_contract_lists_exactly_what_each_loader_reads(service):
    _, load, contract, _ = SERVICES[service]
    environ = RecordingEnviron(minimal_environment(contract))
    load(environ)
    assert environ.read == contract.variables


@pytest.mark.parametrize("service", SERVICES)
def test_a4_w3_r1_the_contract_names_every_variable_the_loader_requires(service):
    _, load, contract, _ = SERVICES[service]
    complete = minimal_environment(contract)
    for name in sorted(contract.required):
        with pytest.raises(SettingsError) as raised:
            load({k: v for k, v in complete.items() if k != name})
        assert raised.value.variable == name


def stack_uploads(run: ProgramRun) -> tuple[int, tuple[str, ...]]:
    """The upload limits the stack wrote into the API function's environment."""
    environment = api_environment(run)
    return (
        int(environment[EnvVar.UPLOAD_MAX_BYTES]),
        tuple(environment[EnvVar.UPLOAD_CONTENT_TYPES].split(",")),
    )


def test_a7_m1_the_api_gateway_model_is_the_contracts_with_the_stacks_limits(run):
    model = run.one("aws:apigateway/model:Model", "api-create-video-model").inputs
    max_bytes, types = stack_uploads(run)
    expected = create_video_schema(max_bytes, types)
    assert json.loads(model["schema"]) == expected
    # Only the size ceiling and the content types differ from the contract's model.
    unchanged = {k: v for k, v in expected["properties"].items() if k != "content_type"}
    contract = dict(CREATE_VIDEO_SCHEMA["properties"])
    # Every type the stack accepts meets the contract's pattern (checked by the config layer).
    pattern = contract.pop("content_type")["pattern"]
    assert all(re.fullmatch(pattern, t) for t in types)
    assert unchanged == {
        **contract,
        "size_bytes": {**contract["size_bytes"], "maximum": max_bytes},
    }
    assert expected["required"] == CREATE_VIDEO_SCHEMA["required"]
    parts = run.one("aws:apigateway/model:Model", "api-upload-parts-model").inputs
    assert json.loads(parts["schema"]) == UPLOAD_PARTS_SCHEMA


def valid_create(**fields: Any) -> dict[str, Any]:
    return {
        "title": "t",
        "creator": "c",
        "size_bytes": 1,
        "content_type": "video/mp4",
        **fields,
    }


@pytest.mark.parametrize("field", ["title", "creator"])
def test_a7_r2_the_handler_accepts_and_rejects_at_the_models_length_limits(run, field):
    """What API Gateway lets through at the limit the handler accepts; one more it rejects."""
    max_bytes, types = stack_uploads(run)
    longest = CREATE_VIDEO_SCHEMA["properties"][field]["maxLength"]
    parse_create(valid_create(**{field: "a" * longest}), max_bytes=max_bytes, content_types=types)
    with pytest.raises(ApiError) as raised:
        parse_create(
            valid_create(**{field: "a" * (longest + 1)}), max_bytes=max_bytes, content_types=types
        )
    assert raised.value.status == 400
    assert raised.value.field == field


def test_a7_m1_the_handler_accepts_what_the_stacks_model_accepts_at_its_edges(run):
    """M1: the model's size ceiling and every enumerated type pass the handler with the limits
    the stack wrote into its environment; one byte more is refused by both."""
    max_bytes, types = stack_uploads(run)
    properties = json.loads(
        run.one("aws:apigateway/model:Model", "api-create-video-model").inputs["schema"]
    )["properties"]
    assert properties["size_bytes"]["maximum"] == max_bytes
    for content_type in properties["content_type"]["enum"]:
        created = parse_create(
            valid_create(size_bytes=max_bytes, content_type=content_type),
            max_bytes=max_bytes,
            content_types=types,
        )
        assert (created.size_bytes, created.content_type) == (max_bytes, content_type)
    with pytest.raises(ApiError) as raised:
        parse_create(
            valid_create(size_bytes=max_bytes + 1), max_bytes=max_bytes, content_types=types
        )
    assert raised.value.status == 413


def test_a7_r2_the_handler_refuses_fields_the_model_does_not_declare():
    assert CREATE_VIDEO_SCHEMA["additionalProperties"] is False
    with pytest.raises(ApiError):
        parse_create(valid_create(extra="x"), max_bytes=10, content_types=("video/mp4",))


def test_a7_m1_the_handler_takes_the_largest_parts_batch_the_model_allows():
    items = UPLOAD_PARTS_SCHEMA["properties"]["parts"]
    most = items["maxItems"]
    checksum = "A" * 43 + "="
    parts = [{"part_number": n, "checksum_sha256": checksum} for n in range(1, most + 1)]
    assert len(parse_parts({"parts": parts})) == most
    with pytest.raises(ApiError):
        parse_parts({"parts": [*parts, {"part_number": most + 1, "checksum_sha256": checksum}]})


def test_r2_list_limit_is_the_contracts():
    assert parse_list_query({"limit": str(LIMIT_MAX)}).limit == LIMIT_MAX
    with pytest.raises(ApiError):
        parse_list_query({"limit": str(LIMIT_MAX + 1)})


def test_the_contract_imports_the_standard_library_only():
    """It ships in both Lambda packages and the worker image, and components import it."""
    tree = ast.parse((ROOT / "services" / "contract.py").read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


@pytest.mark.parametrize(
    "sources", [API_SOURCES, MIGRATE_SOURCES, KEYS_SOURCES], ids=["api", "migrate", "keys"]
)
def test_every_lambda_package_ships_the_contract(sources):
    assert "services/contract.py" in sources
    assert (Path(ROOT) / "services" / "contract.py").is_file()


def test_the_services_readme_documents_every_variable_of_the_contract():
    names = {value for key, value in vars(EnvVar).items() if not key.startswith("_")}
    readme = (ROOT / "services" / "README.md").read_text()
    assert sorted(name for name in names if f"`{name}`" not in readme) == []

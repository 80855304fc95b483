"""Media-processing platform: build the tiers from the stack's settings, grant, export.

Every rule lives in `components/`, every value in the stack's config (read by `stack_config`).
"""

from functools import partial

import pulumi

from components.account import DeploymentTarget
from components.api import API_STEM, ApiBackend, KeyRotationCode, PublicApi, PublicApiArgs
from components.audit import AuditTrail, AuditTrailArgs, AuditTrailMode, trail_bucket_arn
from components.backup import DatabaseBackups, DatabaseBackupsArgs
from components.cache import (
    RedisReplicationGroup,
    RedisReplicationGroupArgs,
    TokenRotationPlacement,
)
from components.database import EncryptedAurora, EncryptedAuroraArgs
from components.delivery import KEYS_STEM, MediaDistribution, MediaDistributionArgs, PlaybackTarget
from components.functions import function_role_arn
from components.jobs import JobQueue, JobQueueArgs
from components.kms import PlatformKeys, PlatformKeysArgs
from components.media_storage import MediaStorage, MediaStorageArgs, TranscodeTarget, UploadTarget
from components.network import SecureVpc, SecureVpcArgs
from components.observability import (
    AlarmTopic,
    AlarmTopicArgs,
    OperationsDashboard,
    OperationsDashboardArgs,
)
from components.packaging import (
    build_api_package,
    build_keys_package,
    build_migrate_package,
    build_rotation_package,
    migrations_fingerprint,
)
from components.schema import SchemaMigrations, SchemaMigrationsArgs
from components.storage import SharedFileSystem, SharedFileSystemArgs
from components.stream import AnalyticsStream, AnalyticsStreamArgs
from components.worker import (
    MediaWorkerService,
    MediaWorkerServiceArgs,
    SharedVolume,
    WorkerConnections,
)
from services.contract import API_DB_USER, WORKER_DB_USER
from stack_config import load_settings

settings = load_settings()  # raises one ConfigError listing every bad key (G8)
target = DeploymentTarget.look_up(settings.region, settings.common_tags())
zones = settings.require_zones(target.zone_names)  # G1: looked up, never written down
context, on_provider, namer = target.context, target.options, settings.namer()
# What every tier is given: names, account facts, log retention, data protection (G3).
common = dict(namer=namer, context=context, log_retention_days=settings.log_retention_days)
protect = dict(protect_data=settings.protection.protect_data)

keys = PlatformKeys("keys", PlatformKeysArgs(context=context, namer=namer, **protect), on_provider)
network = SecureVpc(
    "network",
    SecureVpcArgs.of(
        settings.network,
        **common,
        availability_zones=zones,
        logs_key_arn=keys.logs.arn,
    ),
    on_provider,
)
alarms = AlarmTopic(
    "alarms",
    AlarmTopicArgs.of(
        settings.alarms, namer=namer, context=context, kms_key_arn=keys.messaging.arn
    ),
    on_provider,
)

# Every tier below encrypts its logs with the logs key and notifies the alarm topic.
tier = dict(**common, **protect, logs_key_arn=keys.logs.arn, alarm_topic_arn=alarms.arn)
# The data stores sit in the data subnets and keep their secrets under the secrets key.
data_store = dict(
    **tier,
    vpc_id=network.vpc_id,
    subnet_ids=network.data_subnet_ids,
    availability_zones=network.zones,
    secret_key_arn=keys.secrets.arn,
)
# App-tier workloads run in the app subnets and wait for their routes and endpoints (and, via
# `network_grants`, for every flow they are granted) before they start work.
app_subnets = dict(
    vpc_id=network.vpc_id,
    subnet_ids=network.app_subnet_ids,
    placement_ready=network.app_prerequisites,
)


def aws_apis(label: str):
    """The grant of HTTPS to the AWS APIs (endpoints or NAT) for one workload's group."""
    return lambda group: network.grant_aws_apis(group, label)


# --- data tier: database, cache (consumers are let in with `allow_from`) ---------------------
database = EncryptedAurora(
    "database",
    EncryptedAuroraArgs.of(settings.database, **data_store, storage_key_arn=keys.database.arn),
    on_provider,
)
if settings.backups.enabled:
    DatabaseBackups(
        "backups",
        DatabaseBackupsArgs.of(
            settings.backups,
            namer=namer,
            context=context,
            cluster_arn=database.cluster.arn,
            vault_key_arn=keys.database.arn,
            **protect,
        ),
        on_provider,
    )
# One archive for the secrets' rotation functions (issue 14, item 7).
rotation_package = build_rotation_package()
cache = RedisReplicationGroup(
    "cache",
    RedisReplicationGroupArgs.of(
        settings.cache,
        **data_store,
        storage_key_arn=keys.cache.arn,
        # The AUTH token's rotation function runs in the app subnets, like the API.
        token_rotation=TokenRotationPlacement(
            subnet_ids=network.app_subnet_ids,
            placement_ready=network.app_prerequisites,
            code_path=rotation_package.archive_path(),
            code_sha256=rotation_package.sha256_base64,
            network_grants=(aws_apis("cache-rotation"),),
        ),
    ),
    on_provider,
)

# --- processing tier: stream, job queue, schema, shared storage, workers ---------------------
stream = AnalyticsStream(
    "stream",
    AnalyticsStreamArgs.of(
        settings.stream,
        **protect,
        namer=namer,
        kms_key_arn=keys.stream.arn,
        alarm_topic_arn=alarms.arn,
    ),
    on_provider,
)
jobs = JobQueue(
    "jobs",
    JobQueueArgs.of(
        settings.queue,
        **tier,
        kms_key_arn=keys.messaging.arn,
        source_stream_arn=stream.arn,
        source_read_grants=tuple(stream.read_grants()),
    ),
    on_provider,
)

# The schema (and the services' database roles) is applied by the deployment itself; the
# migration function is the only reader of the master secret (components/schema.py).
migrate_package = build_migrate_package()
migrations = SchemaMigrations(
    "schema",
    SchemaMigrationsArgs.for_database(
        database,
        **common,
        **app_subnets,
        code_path=migrate_package.archive_path(),
        code_sha256=migrate_package.sha256_base64,
        migrations_sha256=migrations_fingerprint(),
        logs_key_arn=keys.logs.arn,
        secrets_key_arn=keys.secrets.arn,
        network_grants=(aws_apis("migrate"),),
    ),
    on_provider,
)
data_tiers = dict(database=database, cache=cache, stream=stream)

# Sources are uploaded to the ingest bucket, renditions published to the media bucket (M1, M6).
# The distribution that reads the media is built later (it needs the worker's content key);
# its ARN reaches only the media bucket's and key's policies, resolved once it exists (M7).
distribution_arn, resolve_distribution_arn = pulumi.deferred_output()
storage = MediaStorage(
    "media",
    MediaStorageArgs.of(
        settings.media_storage,
        **common,
        **protect,
        distribution_arn=distribution_arn,
        # The trail bucket (created below, its name fixed up front) logs here too (S3.9).
        logged_bucket_arns=(
            (trail_bucket_arn(namer, context),)
            if settings.audit.mode is AuditTrailMode.CREATE
            else ()
        ),
    ),
    on_provider,
)

files = SharedFileSystem(
    "files",
    SharedFileSystemArgs(
        namer=namer,
        vpc_id=network.vpc_id,
        subnet_ids=network.data_subnet_ids,
        kms_key_arn=keys.filesystem.arn,
        placement_ready=network.data_prerequisites,
        **protect,
    ),
    on_provider,
)
worker = MediaWorkerService(
    "worker",
    MediaWorkerServiceArgs.of(
        settings.worker,
        **tier,
        **app_subnets,
        images_key_arn=keys.images.arn,
        secrets_key_arn=keys.secrets.arn,
        deployer_arn=target.deployer_arn,
        # Key delivery derives title keys from the content key (K3, M9).
        content_key_readers=[function_role_arn(context, namer, KEYS_STEM)],
        connections=WorkerConnections.of_tiers(**data_tiers, jobs=jobs),
        media=TranscodeTarget.of(storage),
        shared_volume=SharedVolume.of(files),
        start_after=[migrations.invocation],
        network_grants=(
            aws_apis("worker"),
            database.allow_from,
            cache.allow_from,
            *([files.allow_from] if settings.worker.efs_mount else []),
        ),
        task_grants={
            "cache-secret": cache.grant_secret_read,
            "jobs": jobs.grant_consume,
            "stream": stream.grant_write,
            "db-connect": partial(database.grant_connect, db_user=WORKER_DB_USER),
        },
        visibility_timeout_seconds=settings.queue.visibility_timeout_seconds,
    ),
    on_provider,
)

# --- delivery tier: CloudFront, signed playback, key delivery (M7-M9) ------------------------
keys_package = build_keys_package()
delivery = MediaDistribution(
    "delivery",
    MediaDistributionArgs.of(
        settings.delivery,
        **common,
        **protect,
        **app_subnets,
        media_bucket_domain_name=storage.media_bucket_domain_name,
        content_key_secret_arn=worker.content_key_secret_arn,
        code_path=keys_package.archive_path(),
        code_sha256=keys_package.sha256_base64,
        secrets_key_arn=keys.secrets.arn,
        logs_key_arn=keys.logs.arn,
        # The API signs grants with the private key (M8); its role exists only later.
        signing_key_readers=[function_role_arn(context, namer, API_STEM)],
        deployer_arn=target.deployer_arn,
        alarm_email=settings.alarms.email,
        # Key delivery reads only Secrets Manager (and KMS through it): no database, no cache.
        network_grants=(aws_apis("keys"),),
    ),
    on_provider,
)
resolve_distribution_arn(delivery.distribution_arn)

# --- API tier ---------------------------------------------------------------------------------
# The function's zip is rebuilt from services/ and the installed wheels on every run; the same
# sources give the same bytes, so an unchanged API shows no diff (A4).
api_package = build_api_package()
api = PublicApi(
    "api",
    PublicApiArgs.of(
        settings.api,
        **tier,
        **app_subnets,
        code_path=api_package.archive_path(),
        code_sha256=api_package.sha256_base64,
        backend=ApiBackend.of_tiers(**data_tiers),
        uploads=UploadTarget.of(storage),
        playback=PlaybackTarget.of(delivery),
        secrets_key_arn=keys.secrets.arn,
        start_after=[migrations.invocation],
        network_grants=(aws_apis("api"), database.allow_from, cache.allow_from),
        key_rotation=KeyRotationCode(
            code_path=rotation_package.archive_path(),
            code_sha256=rotation_package.sha256_base64,
            network_grants=(
                aws_apis("api-key-rotation"),
                lambda group: network.grant_public_aws_api(group, "api-key-rotation"),
            ),
        ),
        access_grants={
            "db-connect": partial(database.grant_connect, db_user=API_DB_USER),
            "cache-secret": cache.grant_secret_read,
            "stream-write": stream.grant_write,
        },
    ),
    on_provider,
)

# --- operations: audit trail, dashboard -------------------------------------------------------
audit = AuditTrail(
    "audit",
    AuditTrailArgs.of(
        settings.audit,
        **common,
        **protect,
        logs_key_arn=keys.logs.arn,
        access_log_target=storage.access_log_target,
    ),
    on_provider,
)
dashboard = OperationsDashboard(
    "operations",
    OperationsDashboardArgs.of_tiers(
        namer=namer, region=settings.region, api=api, jobs=jobs, worker=worker, **data_tiers
    ),
    on_provider,
)

outputs = {
    "region": settings.region,
    "availabilityZones": zones,
    "vpcId": network.vpc_id,
    "publicSubnetIds": network.public_subnet_ids,
    "appSubnetIds": network.app_subnet_ids,
    "dataSubnetIds": network.data_subnet_ids,
    "alarmTopicArn": alarms.arn,
    "streamName": stream.name,
    "streamArn": stream.arn,
    "jobQueueUrl": jobs.queue_url,
    "deadLetterQueueUrl": jobs.dlq_url,
    "databaseEndpoint": database.endpoint,
    "databaseReaderEndpoint": database.reader_endpoint,
    "databaseEngineVersion": database.engine_version,
    "databaseSecretArn": database.secret_arn,
    "cacheEndpoint": cache.primary_endpoint,
    "cacheReaderEndpoint": cache.reader_endpoint,
    "cacheAuthSecretArn": cache.auth_secret_arn,  # none with transit encryption off
    "ecsClusterName": worker.cluster_name,
    "ecsServiceName": worker.service_name,
    "fileSystemId": files.file_system_id,
    "workerRepositoryUrl": worker.repository_url,
    "contentKeySecretArn": worker.content_key_secret_arn,
    "ingestBucketName": storage.ingest_bucket_name,
    "mediaBucketName": storage.media_bucket_name,
    "mediaKeyArn": storage.key_arn,
    "distributionDomainName": delivery.domain_name,
    "distributionId": delivery.distribution_id,
    "playbackKeyGroupId": delivery.key_group_id,
    "playbackPublicKeyId": delivery.public_key_id,
    "apiUrl": api.invoke_url,
    "apiId": api.rest_api_id,
    "apiStageName": api.stage_name,
    "apiKeyId": api.api_key_id,
    "apiKeySecretArn": api.api_key_secret_arn,  # none with IAM
    "operationsDashboardName": dashboard.dashboard_name,
    "auditTrailArn": audit.trail_arn,
    "auditBucketName": audit.bucket_name,  # none when OFF
    "auditReplicaBucketName": audit.replica_bucket_name,  # none without auditReplicaRegion
}
for name, value in outputs.items():
    if value is not None:
        pulumi.export(name, value)

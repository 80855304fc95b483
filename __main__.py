"""Media-processing platform: turns validated stack settings into components and exports.

Nothing else lives here: every rule is in `components/`, every value in the stack's config.
"""

from functools import partial

import pulumi
import pulumi_aws as aws

from components.api import ApiBackend, PublicApi, PublicApiArgs
from components.audit import AuditTrail, AuditTrailArgs
from components.cache import RedisReplicationGroup, RedisReplicationGroupArgs
from components.database import EncryptedAurora, EncryptedAuroraArgs
from components.jobs import JobQueue, JobQueueArgs
from components.kms import AwsContext, PlatformKeys, PlatformKeysArgs
from components.naming import common_tags, namer_for
from components.network import SecureVpc, SecureVpcArgs
from components.observability import (
    AlarmTopic,
    AlarmTopicArgs,
    OperationsDashboard,
    OperationsDashboardArgs,
)
from components.packaging import build_api_package, build_migrate_package, migrations_fingerprint
from components.schema import SchemaMigrations, SchemaMigrationsArgs
from components.settings import load_settings
from components.storage import SharedFileSystem, SharedFileSystemArgs
from components.stream import AnalyticsStream, AnalyticsStreamArgs, StreamMode
from components.worker import (
    MediaWorkerService,
    MediaWorkerServiceArgs,
    SharedVolume,
    WorkerConnections,
)
from services.contract import API_DB_USER, WORKER_DB_USER

settings = load_settings()  # raises one ConfigError listing every bad key (G8)
namer = namer_for(settings)

# One explicit provider carries the region and the common tags (G4) for every resource.
provider = aws.Provider("aws", region=settings.region,
                        default_tags={"tags": common_tags(settings)})
invoke = pulumi.InvokeOptions(provider=provider)
# Only zones that need no opt-in (G1: zones are looked up, never written down).
zones = settings.require_zones(aws.get_availability_zones(
    state="available",
    filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
    opts=invoke,
).names)
identity = aws.get_caller_identity_output(opts=invoke)
partition = aws.get_partition_output(opts=invoke)
# The role behind the deploying session (CI's OIDC role, an engineer's SSO role).
deployer = aws.iam.get_session_context_output(arn=identity.arn, opts=invoke)
context = AwsContext(account_id=identity.account_id, partition=partition.partition,
                     region=settings.region, dns_suffix=partition.dns_suffix)
on_provider = pulumi.ResourceOptions(provider=provider)

keys = PlatformKeys("keys", PlatformKeysArgs(
    context=context, namer=namer,
    deletion_window_days=settings.protection.kms_deletion_window_days,
    protect_data=settings.protection.enabled,
), on_provider)

network = SecureVpc("network", SecureVpcArgs(
    cidr=settings.network.cidr,
    availability_zones=zones,
    namer=namer,
    context=context,
    flow_log_key_arn=keys.logs.arn,
    log_retention_days=settings.log_retention_days,
    nat_strategy=settings.network.nat_strategy,
    data_subnet_nacls=settings.network.data_subnet_nacls,
    vpc_endpoints=settings.network.vpc_endpoints,
), on_provider)

alarms = AlarmTopic("alarms", AlarmTopicArgs(
    namer=namer, context=context, kms_key_arn=keys.messaging.arn,
    email=settings.observability.alarm_email,
), on_provider)

# --- data tier (issue 4): database, cache -------------------------------------------------
# Consumers are let in by their tiers: `database.allow_from(sg)`, `cache.allow_from(sg)`.
database = EncryptedAurora("database", EncryptedAuroraArgs(
    namer=namer,
    context=context,
    vpc_id=network.vpc_id,
    subnet_ids=network.data_subnet_ids,
    availability_zones=network.zones,
    storage_key_arn=keys.database.arn,
    secret_key_arn=keys.secrets.arn,
    logs_key_arn=keys.logs.arn,
    alarm_topic_arn=alarms.arn,
    engine_version=settings.database.engine_version,
    min_capacity=settings.database.min_capacity,
    max_capacity=settings.database.max_capacity,
    reader_count=settings.database.reader_count,
    database_name=settings.database.name,
    backup_retention_days=settings.database.backup_retention_days,
    backup_window=settings.database.backup_window,
    maintenance_window=settings.database.maintenance_window,
    secret_rotation_days=settings.database.secret_rotation_days,
    log_retention_days=settings.log_retention_days,
    protect_data=settings.protection.enabled,
    cpu_alarm_percent=settings.observability.thresholds.db_cpu_percent,
), on_provider)

cache = RedisReplicationGroup("cache", RedisReplicationGroupArgs(
    namer=namer,
    context=context,
    vpc_id=network.vpc_id,
    subnet_ids=network.data_subnet_ids,
    availability_zones=network.zones,
    storage_key_arn=keys.cache.arn,
    secret_key_arn=keys.secrets.arn,
    logs_key_arn=keys.logs.arn,
    alarm_topic_arn=alarms.arn,
    engine=settings.cache.engine,
    engine_version=settings.cache.engine_version,
    node_type=settings.cache.node_type,
    node_count=settings.cache.node_count,
    transit_encryption=settings.cache.transit_encryption,
    snapshot_retention_days=settings.cache.snapshot_retention_days,
    snapshot_window=settings.cache.snapshot_window,
    maintenance_window=settings.cache.maintenance_window,
    protect_data=settings.protection.enabled,
    secret_recovery_window_days=settings.protection.secret_recovery_window_days,
    log_retention_days=settings.log_retention_days,
    cpu_alarm_percent=settings.observability.thresholds.cache_cpu_percent,
), on_provider)

# --- processing tier (issue 5): stream, job queue, shared storage, worker service ----------

stream = AnalyticsStream("stream", AnalyticsStreamArgs(
    namer=namer,
    kms_key_arn=keys.stream.arn,
    alarm_topic_arn=alarms.arn,
    mode=settings.stream.mode,
    shard_count=(settings.stream.shard_count
                 if settings.stream.mode is StreamMode.PROVISIONED else None),
    retention_hours=settings.stream.retention_hours,
    iterator_age_alarm_ms=settings.observability.thresholds.stream_iterator_age_ms,
    enforce_consumer_deletion=settings.protection.force_destroy,
    protect_data=settings.protection.enabled,
), on_provider)

jobs = JobQueue("jobs", JobQueueArgs(
    namer=namer,
    context=context,
    kms_key_arn=keys.messaging.arn,
    alarm_topic_arn=alarms.arn,
    source_stream_arn=stream.arn,
    source_read_grants=tuple(stream.read_grants()),
    log_key_arn=keys.logs.arn,
    log_retention_days=settings.log_retention_days,
    job_timeout_seconds=settings.queue.job_timeout_seconds,
    visibility_timeout_seconds=settings.queue.visibility_timeout_seconds,
    max_receive_count=settings.queue.max_receive_count,
    oldest_message_alarm_seconds=settings.observability.thresholds.queue_oldest_message_seconds,
    protect_data=settings.protection.enabled,
), on_provider)

# The schema (and the services' database roles) is applied by the deployment itself; the
# migration function is the only reader of the master secret (components/schema.py).
migrate_package = build_migrate_package()
migrations = SchemaMigrations("schema", SchemaMigrationsArgs(
    namer=namer,
    context=context,
    vpc_id=network.vpc_id,
    subnet_ids=network.app_subnet_ids,
    code_path=migrate_package.archive_path(),
    code_sha256=migrate_package.sha256_base64,
    migrations_sha256=migrations_fingerprint(),
    cluster_resource_id=database.cluster.cluster_resource_id,
    db_host=database.endpoint,
    db_port=database.port,
    db_name=database.database_name,
    db_secret_arn=database.secret_arn,
    logs_key_arn=keys.logs.arn,
    secrets_key_arn=keys.secrets.arn,
    access_grants={"db-secret": database.grant_secret_read},
    network_grants=(database.allow_from,
                    lambda group: network.grant_aws_apis(group, "migrate")),
    run_after=[database.writer],
    log_retention_days=settings.log_retention_days,
), on_provider)

# What both services connect to: endpoints and names (components/connections.py).
data_plane = dict(
    db_host=database.endpoint,
    db_port=database.port,
    db_name=database.database_name,
    redis_host=cache.primary_endpoint,
    redis_port=cache.port,
    redis_tls=cache.transit_encryption,
    redis_auth_secret_arn=cache.auth_secret_arn,
    stream_name=stream.name,
)

files = SharedFileSystem("files", SharedFileSystemArgs(
    namer=namer,
    vpc_id=network.vpc_id,
    subnet_ids=network.data_subnet_ids,
    kms_key_arn=keys.filesystem.arn,
    protect_data=settings.protection.enabled,
), on_provider)

worker = MediaWorkerService("worker", MediaWorkerServiceArgs(
    namer=namer,
    context=context,
    vpc_id=network.vpc_id,
    subnet_ids=network.app_subnet_ids,
    connections=WorkerConnections(
        **data_plane,
        jobs_queue_url=jobs.queue_url,
        jobs_queue_name=jobs.queue_name,
        dead_letter_queue_url=jobs.dlq_url,
        max_receive_count=jobs.max_receive_count,
    ),
    logs_key_arn=keys.logs.arn,
    images_key_arn=keys.images.arn,
    secrets_key_arn=keys.secrets.arn,
    alarm_topic_arn=alarms.arn,
    deployer_arn=deployer.issuer_arn,
    execution_grants={"cache-secret": cache.grant_secret_read},
    task_grants={"jobs": jobs.grant_consume, "stream": stream.grant_write,
                 "db-connect": partial(database.grant_connect, db_user=WORKER_DB_USER)},
    start_after=[migrations.invocation],
    shared_volume=SharedVolume(file_system_id=files.file_system_id,
                               access_point_id=files.access_point_id,
                               grant_mount=files.grant_mount,
                               mount_targets=files.mount_targets),
    efs_mount=settings.worker.efs_mount,
    cpu=settings.worker.cpu,
    memory=settings.worker.memory,
    min_tasks=settings.worker.min_tasks,
    max_tasks=settings.worker.max_tasks,
    fargate_base=settings.worker.fargate_base,
    fargate_weight=settings.worker.fargate_weight,
    spot_weight=settings.worker.spot_weight,
    image=settings.worker.image,
    cpu_target=settings.worker.cpu_target,
    backlog_per_task=settings.worker.backlog_per_task,
    stop_timeout_seconds=settings.worker.stop_timeout_seconds,
    job_timeout_seconds=settings.queue.job_timeout_seconds,
    visibility_timeout_seconds=settings.queue.visibility_timeout_seconds,
    log_retention_days=settings.log_retention_days,
    force_delete_images=settings.protection.force_destroy,
    secret_recovery_window_days=settings.protection.secret_recovery_window_days,
    cpu_alarm_percent=settings.observability.thresholds.worker_cpu_percent,
    memory_alarm_percent=settings.observability.thresholds.worker_memory_percent,
), on_provider)
network.grant_aws_apis(worker.security_group, "worker")
database.allow_from(worker.security_group)
cache.allow_from(worker.security_group)
if settings.worker.efs_mount:
    files.allow_from(worker.security_group)

# --- API tier (issue 6) --------------------------------------------------------------------

# The function's zip is rebuilt from services/ and the installed wheels on every run; the same
# sources give the same bytes, so an unchanged API shows no diff (A4).
api_package = build_api_package()
api = PublicApi("api", PublicApiArgs(
    namer=namer,
    context=context,
    vpc_id=network.vpc_id,
    subnet_ids=network.app_subnet_ids,
    code_path=api_package.archive_path(),
    code_sha256=api_package.sha256_base64,
    backend=ApiBackend(**data_plane),
    logs_key_arn=keys.logs.arn,
    secrets_key_arn=keys.secrets.arn,
    alarm_topic_arn=alarms.arn,
    access_grants={"db-connect": partial(database.grant_connect, db_user=API_DB_USER),
                   "cache-secret": cache.grant_secret_read,
                   "stream-write": stream.grant_write},
    start_after=[migrations.invocation],
    auth=settings.api.auth,
    throttle_rate_limit=settings.api.throttle_rate_limit,
    throttle_burst_limit=settings.api.throttle_burst_limit,
    quota_limit=settings.api.quota_limit,
    quota_period=settings.api.quota_period,
    waf_rate_limit=settings.api.waf_rate_limit,
    reserved_concurrency=settings.api.reserved_concurrency,
    memory_mb=settings.api.lambda_memory_mb,
    cache_size_gb=settings.api.cache_size_gb,
    manage_cloudwatch_role=settings.api.manage_cloudwatch_role,
    log_retention_days=settings.log_retention_days,
    secret_recovery_window_days=settings.protection.secret_recovery_window_days,
    alarm_5xx_threshold=settings.observability.thresholds.api_5xx,
    alarm_latency_p99_ms=settings.observability.thresholds.api_latency_p99_ms,
), on_provider)
network.grant_aws_apis(api.security_group, "api")
database.allow_from(api.security_group)
cache.allow_from(api.security_group)

# --- operations (issue 7): audit trail, dashboard --------------------------------------------

audit = AuditTrail("audit", AuditTrailArgs(
    namer=namer,
    context=context,
    mode=settings.observability.audit_trail_mode,
    existing_trail_arn=settings.observability.audit_trail_existing_arn,
    logs_key_arn=keys.logs.arn,
    log_retention_days=settings.log_retention_days,
    transition_days=settings.observability.audit_log_transition_days,
    expiration_days=settings.observability.audit_log_expiration_days,
    key_deletion_window_days=settings.protection.kms_deletion_window_days,
    force_destroy=settings.protection.force_destroy,
    protect_data=settings.protection.enabled,
), on_provider)

dashboard = OperationsDashboard("operations", OperationsDashboardArgs(
    namer=namer,
    region=settings.region,
    api_name=api.rest_api.name,
    api_stage=api.stage_name,
    queue_name=jobs.queue_name,
    dead_letter_queue_name=jobs.dlq_name,
    cluster_name=worker.cluster_name,
    service_name=worker.service_name,
    stream_name=stream.name,
    db_cluster_identifier=database.cluster_identifier,
    cache_replication_group_id=cache.replication_group_id,
    cache_node_count=settings.cache.node_count,
), on_provider)

pulumi.export("region", settings.region)
pulumi.export("availabilityZones", zones)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("publicSubnetIds", network.public_subnet_ids)
pulumi.export("appSubnetIds", network.app_subnet_ids)
pulumi.export("dataSubnetIds", network.data_subnet_ids)
pulumi.export("alarmTopicArn", alarms.arn)
pulumi.export("streamName", stream.name)
pulumi.export("streamArn", stream.arn)
pulumi.export("jobQueueUrl", jobs.queue_url)
pulumi.export("deadLetterQueueUrl", jobs.dlq_url)
pulumi.export("databaseEndpoint", database.endpoint)
pulumi.export("databaseReaderEndpoint", database.reader_endpoint)
pulumi.export("databaseSecretArn", database.secret_arn)
pulumi.export("cacheEndpoint", cache.primary_endpoint)
pulumi.export("cacheReaderEndpoint", cache.reader_endpoint)
if cache.auth_secret_arn is not None:
    pulumi.export("cacheAuthSecretArn", cache.auth_secret_arn)
pulumi.export("ecsClusterName", worker.cluster_name)
pulumi.export("ecsServiceName", worker.service_name)
pulumi.export("fileSystemId", files.file_system_id)
pulumi.export("workerRepositoryUrl", worker.repository_url)
pulumi.export("contentKeySecretArn", worker.content_key_secret_arn)
pulumi.export("apiUrl", api.invoke_url)
pulumi.export("apiId", api.rest_api_id)
pulumi.export("apiStageName", api.stage_name)
if api.api_key_id is not None:  # apiAuth IAM creates no key
    pulumi.export("apiKeyId", api.api_key_id)
    pulumi.export("apiKeySecretArn", api.api_key_secret_arn)
pulumi.export("operationsDashboardName", dashboard.dashboard_name)
if audit.trail_arn is not None:
    pulumi.export("auditTrailArn", audit.trail_arn)
if audit.bucket_name is not None:
    pulumi.export("auditBucketName", audit.bucket_name)

"""Media-processing platform: turns validated stack settings into components and exports.

Nothing else lives here: every rule is in `components/`, every value in the stack's config.
"""

import pulumi
import pulumi_aws as aws

from components.jobs import JobQueue, JobQueueArgs
from components.kms import AwsContext, PlatformKeys, PlatformKeysArgs
from components.naming import common_tags, namer_for
from components.network import SecureVpc, SecureVpcArgs
from components.observability import AlarmTopic, AlarmTopicArgs
from components.settings import load_settings
from components.stream import AnalyticsStream, AnalyticsStreamArgs, StreamMode

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
context = AwsContext(account_id=identity.account_id, partition=partition.partition,
                     region=settings.region, dns_suffix=partition.dns_suffix)
on_provider = pulumi.ResourceOptions(provider=provider)

keys = PlatformKeys("keys", PlatformKeysArgs(
    context=context, namer=namer,
    deletion_window_days=settings.protection.kms_deletion_window_days,
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
), on_provider)

# --- API tier (issue 6) --------------------------------------------------------------------

# --- operations (issue 7): audit trail, dashboard --------------------------------------------

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

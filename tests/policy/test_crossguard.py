"""The policy pack as the Pulumi CLI runs it (O4): `policy/__main__.py` is started as a process
and spoken to over the analyzer gRPC protocol, the way `pulumi preview --policy-pack policy`
does."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2

# The test plays the CLI: the analyzer's gRPC messages and the sentinel the engine sends for a
# value unknown during preview. Neither SDK exports them under another name.
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from offline.engine import ROOT
from policy.pack import CONFIG_SCHEMAS, PACK_NAME
from policy.rules import PolicyConfig, build_rules

ADVISORY, MANDATORY = analyzer_pb2.ADVISORY, analyzer_pb2.MANDATORY


@pytest.fixture(scope="module")
def analyzer():
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "policy" / "__main__.py")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT / "policy",
    )
    try:
        port = int(process.stdout.readline().strip())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=30)


def struct(values: dict) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def configure(stub, stack_config: dict[str, dict]) -> None:
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for name, values in stack_config.items():
        request.policyConfig[name].CopyFrom(
            analyzer_pb2.PolicyConfig(enforcementLevel=MANDATORY, properties=struct(values))
        )
    stub.Configure(request)


def analyze(stub, resource_type: str, props: dict) -> list[tuple[str, int, str]]:
    response = stub.Analyze(
        analyzer_pb2.AnalyzeRequest(
            type=resource_type,
            properties=struct(props),
            name="r",
            urn=f"urn:pulumi:dev::media-pipeline::{resource_type}::r",
        )
    )
    return [
        (d.policyName, d.enforcementLevel, d.message.splitlines()[-1]) for d in response.diagnostics
    ]


def test_o4_pack_announces_every_rule_with_its_level_and_config(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == PACK_NAME == "media-platform-security"
    rules = build_rules(PolicyConfig("dev", False))
    assert [(p.name, p.enforcementLevel) for p in info.policies] == [
        (r.name, MANDATORY if r.mandatory else ADVISORY) for r in rules
    ]
    # Only the deprecation rule advises; every other rule blocks the deployment.
    assert [p.name for p in info.policies if p.enforcementLevel == ADVISORY] == [
        "no-deprecated-resources"
    ]
    schemas = {p.name: p.configSchema for p in info.policies if p.configSchema.required}
    assert {name: list(schema.required) for name, schema in schemas.items()} == {
        name: list(properties) for name, properties in CONFIG_SCHEMAS.items()
    }


def test_o4_pack_fails_an_unencrypted_queue(analyzer):
    configure(analyzer, {"names-carry-suffix": {"environmentSuffix": "dev"}})
    assert analyze(analyzer, "aws:sqs/queue:Queue", {"name": "media-jobs-dev"}) == [
        (
            "cmk-encryption-at-rest",
            MANDATORY,
            "kmsMasterKeyId must be a customer key (not absent, not alias/aws/...) (K1)",
        )
    ]


def test_o4_pack_lets_preview_unknowns_through(analyzer):
    configure(analyzer, {"names-carry-suffix": {"environmentSuffix": "dev"}})
    assert (
        analyze(
            analyzer,
            "aws:sqs/queue:Queue",
            {"name": "media-jobs-dev", "kmsMasterKeyId": UNKNOWN_STRING_VALUE},
        )
        == []
    )


def test_o4_pack_reads_the_stack_suffix_from_its_config(analyzer):
    configure(analyzer, {"names-carry-suffix": {"environmentSuffix": "prod"}})
    key = "arn:aws:kms:eu-central-1:123456789012:key/1"
    assert analyze(
        analyzer, "aws:sqs/queue:Queue", {"name": "media-jobs-dev", "kmsMasterKeyId": key}
    ) == [
        (
            "names-carry-suffix",
            MANDATORY,
            "name='media-jobs-dev' must carry the suffix '-prod' (G2)",
        )
    ]


def test_o4_pack_reports_deprecated_resources_as_advisory(analyzer):
    configure(analyzer, {"names-carry-suffix": {"environmentSuffix": "dev"}})
    assert analyze(analyzer, "aws:s3/bucketV2:BucketV2", {"bucket": "media-x-dev"}) == [
        (
            "no-deprecated-resources",
            ADVISORY,
            "aws:s3/bucketV2:BucketV2 is deprecated: use aws.s3.Bucket (G1)",
        )
    ]


def test_o4_m1_pack_fails_a_stack_with_a_bare_bucket(analyzer):
    """K1, M1: the stack policy sees every resource at once and reports the bucket that has
    no encryption configuration, on that bucket's URN."""
    configure(analyzer, {"names-carry-suffix": {"environmentSuffix": "dev"}})
    urn = "urn:pulumi:dev::media-pipeline::aws:s3/bucket:Bucket::"
    resources = [
        analyzer_pb2.AnalyzerResource(
            type=resource_type, properties=struct(props), urn=urn + name, name=name
        )
        for resource_type, name, props in (
            ("aws:s3/bucket:Bucket", "bare", {"bucket": "media-bare-dev"}),
            (
                "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                "bare-block",
                {"bucket": "media-bare-dev"},
            ),
        )
    ]
    response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources))
    assert [
        (d.policyName, d.enforcementLevel, d.urn, d.message.splitlines()[-1])
        for d in response.diagnostics
    ] == [
        (
            "s3-buckets-encrypted-and-private",
            MANDATORY,
            urn + "bare",
            "no BucketServerSideEncryptionConfiguration: S3's default is SSE-S3, not a "
            "customer-managed key (K1, M1, O3)",
        )
    ]

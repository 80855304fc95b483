"""Customer-managed keys (K1, K2): rotation, alias, exact key-policy statements."""

from __future__ import annotations

import json

import pytest

from components.aws_limits import CLOUDFRONT_REGION
from components.kms import (
    PLATFORM_KEY_PURPOSES,
    AwsContext,
    EncryptionKey,
    EncryptionKeyArgs,
    PlatformKeys,
    PlatformKeysArgs,
    ServiceGrant,
)
from components.naming import Namer
from offline.engine import run_components
from tests.infra.expect import cloudtrail_key_statements, guarded

KEY = "aws:kms/key:Key"
KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
LOGS_STATEMENT = {
    "Sid": "AllowCloudWatchLogs",
    "Effect": "Allow",
    "Principal": {"Service": "logs.eu-central-1.amazonaws.com"},
    "Action": [
        "kms:Encrypt*",
        "kms:Decrypt*",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:Describe*",
    ],
    "Resource": "*",
    "Condition": {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:eu-central-1:123456789012:log-group:*"
        }
    },
}
ALARMS_STATEMENT = {
    "Sid": "AllowCloudWatchAlarmsToPublish",
    "Effect": "Allow",
    "Principal": {"Service": "cloudwatch.amazonaws.com"},
    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
    "Resource": "*",
    "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
}
ROOT_STATEMENT = {
    "Sid": "EnableAccountIamPolicies",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
    "Action": "kms:*",
    "Resource": "*",
}


def build_platform_keys(namer, context, protect_data=False):
    return run_components(
        lambda: PlatformKeys(
            "keys", PlatformKeysArgs(context=context, namer=namer, protect_data=protect_data)
        )
    )


def policy_of(run, name):
    return json.loads(run.named(name).inputs["policy"])


def test_every_platform_key_rotates_and_has_a_suffixed_alias_k1(namer, context):
    run = build_platform_keys(namer, context)
    keys = run.of_type(KEY)
    assert len(keys) == len(PLATFORM_KEY_PURPOSES) == 8
    assert all(k.inputs["enableKeyRotation"] is True for k in keys)
    assert all(k.inputs["deletionWindowInDays"] == 7 for k in keys)
    assert sorted(a.inputs["name"] for a in run.of_type("aws:kms/alias:Alias")) == sorted(
        f"alias/media-{p}-key-test" for p in PLATFORM_KEY_PURPOSES
    )


def test_data_protection_window_reaches_every_key_g3(namer, context):
    windows = {
        k.inputs["deletionWindowInDays"] for k in build_platform_keys(namer, context).of_type(KEY)
    }
    assert windows == {7}
    run = build_platform_keys(namer, context, protect_data=True)
    assert {k.inputs["deletionWindowInDays"] for k in run.of_type(KEY)} == {30}


def test_database_key_policy_is_only_the_account_root_k2(namer, context):
    run = build_platform_keys(namer, context)
    assert policy_of(run, "keys-database-key") == {
        "Version": "2012-10-17",
        "Statement": [ROOT_STATEMENT],
    }


def test_logs_key_admits_the_regional_logs_principal_for_this_accounts_groups_k2(namer, context):
    statements = policy_of(build_platform_keys(namer, context), "keys-logs-key")["Statement"]
    assert statements == [ROOT_STATEMENT, LOGS_STATEMENT]


def test_messaging_key_lets_cloudwatch_alarms_publish_to_the_encrypted_topic_k2(namer, context):
    statements = policy_of(build_platform_keys(namer, context), "keys-messaging-key")["Statement"]
    assert statements[1] == ALARMS_STATEMENT


def test_key_alias_targets_its_own_key(namer, context):
    run = build_platform_keys(namer, context)
    key = run.named("keys-stream-key")
    alias = run.named("keys-stream-alias")
    assert alias.inputs["targetKeyId"] == key.state["keyId"]


@pytest.mark.parametrize(
    ("window", "grants", "message"),
    [
        (5, (), "deletion_window_days=5: allowed 7..30"),
        (31, (), "deletion_window_days=31: allowed 7..30"),
        (
            7,
            (
                ServiceGrant("A", "x.amazonaws.com", ("kms:Decrypt",)),
                ServiceGrant("A", "y.amazonaws.com", ("kms:Decrypt",)),
            ),
            "service_grants: statement ids must be unique, got ['A', 'A']",
        ),
    ],
)
def test_bad_key_args_are_rejected_before_any_child(namer, context, window, grants, message):
    args = EncryptionKeyArgs(
        purpose="x",
        context=context,
        namer=namer,
        deletion_window_days=window,
        service_grants=grants,
    )
    with pytest.raises(ValueError, match="EncryptionKeyArgs: ") as caught:
        EncryptionKey("k", args)
    assert message in str(caught.value)


# -- G3 data protection: the keys outlive a destroy -------------------------------------------


def test_g3_keys_are_ordinary_resources_without_data_protection(namer, context):
    assert guarded(build_platform_keys(namer, context)) == set()


def test_g3_data_protection_protects_and_retains_every_platform_key_not_the_aliases(namer, context):
    run = run_components(
        lambda: PlatformKeys(
            "keys", PlatformKeysArgs(context=context, namer=namer, protect_data=True)
        )
    )
    assert guarded(run) == {(KEY, f"keys-{p}-key", True, True) for p in PLATFORM_KEY_PURPOSES}
    assert all(not a.protect and not a.retain_on_delete for a in run.of_type("aws:kms/alias:Alias"))


def test_g3_single_key_protection_is_on_the_key_only(namer, context):
    run = run_components(
        lambda: EncryptionKey(
            "audit",
            EncryptionKeyArgs(purpose="audit-key", context=context, namer=namer, protect_data=True),
        )
    )
    assert guarded(run) == {(KEY, "audit-key", True, True)}
    # Protection is set on the key, not inherited from a protected component.
    assert run.one("media:kms:EncryptionKey").protect is False


# -- K2: the complete key policy of every key -------------------------------------------------

# Only the logs and messaging keys admit a service principal; every other key is used by
# services on behalf of IAM principals, which the root statement enables.
PLATFORM_KEY_STATEMENTS = {
    "logs": [ROOT_STATEMENT, LOGS_STATEMENT],
    "database": [ROOT_STATEMENT],
    "cache": [ROOT_STATEMENT],
    "secrets": [ROOT_STATEMENT],
    "filesystem": [ROOT_STATEMENT],
    "stream": [ROOT_STATEMENT],
    "messaging": [ROOT_STATEMENT, ALARMS_STATEMENT],
    "images": [ROOT_STATEMENT],
}


def audit_key_statements(stack: str) -> list[dict]:
    trail = f"arn:aws:cloudtrail:eu-central-1:123456789012:trail/media-trail-{stack}"
    topic = f"arn:aws:sns:eu-central-1:123456789012:media-trail-notifications-{stack}"
    return [ROOT_STATEMENT, *cloudtrail_key_statements(trail, topic)]


def test_every_purpose_has_a_statement_list_k2():
    assert set(PLATFORM_KEY_STATEMENTS) == set(PLATFORM_KEY_PURPOSES)


@pytest.fixture(scope="module")
def platform_keys_run():
    return build_platform_keys(
        Namer("media", "test"),
        AwsContext(account_id="123456789012", partition="aws", region="eu-central-1"),
    )


@pytest.mark.parametrize("purpose", PLATFORM_KEY_PURPOSES)
def test_platform_key_policy_is_exactly_root_plus_its_service_statements_k2(
    platform_keys_run, purpose
):
    assert policy_of(platform_keys_run, f"keys-{purpose}-key") == {
        "Version": "2012-10-17",
        "Statement": PLATFORM_KEY_STATEMENTS[purpose],
    }


def edge_statements() -> list[dict]:
    """The CloudFront-region key's (M7, O2): logs and alarms of us-east-1 only."""
    logs = json.loads(json.dumps(LOGS_STATEMENT).replace("eu-central-1", CLOUDFRONT_REGION))
    return [ROOT_STATEMENT, logs, ALARMS_STATEMENT]


def media_key_statements(run) -> list[dict]:
    """The media key's: the account, and the program's one distribution decrypting (M7)."""
    distribution = run.one("aws:cloudfront/distribution:Distribution").state["arn"]
    return [
        ROOT_STATEMENT,
        {
            "Sid": "AllowDistributionDecryptMedia",
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": ["kms:Decrypt"],
            "Resource": "*",
            "Condition": {"StringEquals": {"AWS:SourceArn": distribution}},
        },
    ]


def key_policies(run) -> dict[str, dict]:
    """Every key's policy by key name: its own `policy`, or its `kms.KeyPolicy`'s."""
    separate = {p.inputs["keyId"]: p.inputs["policy"] for p in run.of_type(KEY_POLICY)}
    return {
        k.name: json.loads(k.inputs.get("policy") or separate[k.state["keyId"]])
        for k in run.of_type(KEY)
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_program_keys_have_exactly_the_expected_policies_k2(dev_run, prod_run, stack):
    """Every key the program makes (8 platform keys, the audit key, the media key and the
    CloudFront-region key), statement by statement: no extra service principal, action or
    condition on any of them. Only the media key's policy is a resource of its own."""
    run = {"dev": dev_run, "prod": prod_run}[stack]
    expected = {f"keys-{p}-key": s for p, s in PLATFORM_KEY_STATEMENTS.items()}
    expected["audit-key-key"] = audit_key_statements(stack)
    expected["media-key-key"] = media_key_statements(run)
    expected["delivery-edge-key-key"] = edge_statements()
    if stack == "prod":  # the second region's keys: the account's IAM policies only
        expected["backups-copy-key-key"] = [ROOT_STATEMENT]
        expected["audit-replica-key-key"] = [ROOT_STATEMENT]
    assert key_policies(run) == {
        name: {"Version": "2012-10-17", "Statement": statements}
        for name, statements in expected.items()
    }
    (separate,) = run.of_type(KEY_POLICY)
    assert separate.inputs["keyId"] == run.one(KEY, "media-key-key").state["keyId"]
    assert "policy" not in run.one(KEY, "media-key-key").inputs


def test_a_separate_policy_is_the_keys_whole_policy_as_its_own_resource_k2(namer, context):
    grant = ServiceGrant(sid="AllowS3", service="s3.amazonaws.com", actions=("kms:Decrypt",))
    run = run_components(
        lambda: EncryptionKey(
            "media",
            EncryptionKeyArgs(
                purpose="media-key",
                context=context,
                namer=namer,
                service_grants=(grant,),
                separate_policy=True,
            ),
        )
    )
    key = run.one(KEY)
    assert "policy" not in key.inputs
    policy = run.one(KEY_POLICY).inputs
    assert policy["keyId"] == key.state["keyId"]
    assert json.loads(policy["policy"])["Statement"] == [ROOT_STATEMENT, grant.statement()]


def test_a_key_in_the_cloudfront_region_has_its_alias_there_too_k1(namer, context):
    run = run_components(
        lambda: EncryptionKey(
            "edge",
            EncryptionKeyArgs(
                purpose="edge-key", context=context, namer=namer, region=CLOUDFRONT_REGION
            ),
        )
    )
    assert run.one(KEY).inputs["region"] == CLOUDFRONT_REGION
    assert run.one(KEY).state["arn"].startswith(f"arn:aws:kms:{CLOUDFRONT_REGION}:")
    assert run.one("aws:kms/alias:Alias").inputs["region"] == CLOUDFRONT_REGION
    # Nothing else: a key without `region` is in the provider's region.
    plain = build_platform_keys(namer, context)
    assert all("region" not in r.inputs for r in plain.resources if r.custom)

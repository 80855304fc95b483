"""The CrossGuard glue (O4): policies built from the rules, run the way the analyzer runs them
(props behind pulumi_policy's unknown-checking proxy, per-policy config), and the offline
plan's policy report."""

from __future__ import annotations

import json

import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs

# How the analyzer wraps props before `validate` sees them; the policy SDK exports no public
# equivalent, and the sentinels are what the engine sends for values unknown during preview.
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE, unknown_checking_proxy

from offline.engine import ROOT
from offline.plan import render_policy_report
from policy.pack import CONFIG_SCHEMAS, build_policies, plain
from policy.rules import UNKNOWN, PolicyConfig, build_rules

KEY = "arn:aws:kms:eu-central-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def policies():
    return {p.name: p for p in build_policies()}


def analyze(policy_name: str, resource_type: str, props: dict, config: dict | None = None):
    """What the analyzer does for one resource: proxy the props, call validate, collect."""
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    args = ResourceValidationArgs(
        resource_type,
        unknown_checking_proxy(props),
        f"urn:pulumi:dev::media-pipeline::{resource_type}::r",
        "r",
        options,
        None,
        config,
    )
    reported: list[str] = []
    policies()[policy_name].validate(args, lambda message, urn=None: reported.append(message))
    return reported


def test_o4_configured_policies_declare_their_config_schema():
    built = policies()
    for name, properties in CONFIG_SCHEMAS.items():
        schema = built[name].config_schema
        assert (schema.properties, schema.required) == (properties, list(properties))
    assert built["cmk-encryption-at-rest"].config_schema is None


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_o4_policy_config_files_satisfy_the_schemas(stack):
    raw = json.loads((ROOT / "policy" / f"policy-config.{stack}.json").read_text())
    assert set(raw) == set(CONFIG_SCHEMAS)
    for name, properties in CONFIG_SCHEMAS.items():
        assert set(raw[name]) == set(properties)
        for key, spec in properties.items():
            kind = {"string": str, "boolean": bool}[spec["type"]]
            assert isinstance(raw[name][key], kind)


def test_o4_compliant_resource_reports_nothing_through_crossguard():
    assert (
        analyze(
            "cmk-encryption-at-rest",
            "aws:rds/cluster:Cluster",
            {"storageEncrypted": True, "kmsKeyId": KEY},
        )
        == []
    )


def test_o4_unknown_preview_values_do_not_fail_or_raise():
    props = {
        "storageEncrypted": True,
        "kmsKeyId": UNKNOWN_STRING_VALUE,
        "tags": {"Name": UNKNOWN_STRING_VALUE},
    }
    assert analyze("cmk-encryption-at-rest", "aws:rds/cluster:Cluster", props) == []
    assert (
        analyze(
            "audit-trail-hardened",
            "aws:cloudtrail/trail:Trail",
            {
                "enableLogFileValidation": UNKNOWN_BOOLEAN_VALUE,
                "isMultiRegionTrail": True,
                "includeGlobalServiceEvents": True,
                "cloudWatchLogsGroupArn": UNKNOWN_STRING_VALUE,
            },
        )
        == []
    )


def test_o4_configured_policies_read_the_per_policy_config():
    queue = {"name": "media-jobs-dev"}
    assert (
        analyze("names-carry-suffix", "aws:sqs/queue:Queue", queue, {"environmentSuffix": "dev"})
        == []
    )
    assert analyze(
        "names-carry-suffix", "aws:sqs/queue:Queue", queue, {"environmentSuffix": "prod"}
    ) == ["name='media-jobs-dev' must carry the suffix '-prod' (G2)"]
    bucket = {"bucket": "media-trail-1-prod", "forceDestroy": True}
    assert (
        analyze(
            "destroyable-unless-protected",
            "aws:s3/bucket:Bucket",
            bucket,
            {"dataProtection": False},
        )
        == []
    )
    assert analyze(
        "destroyable-unless-protected", "aws:s3/bucket:Bucket", bucket, {"dataProtection": True}
    ) == ["forceDestroy must be false when dataProtection is true (G3)"]


def test_o4_provider_default_tags_are_checked_through_crossguard():
    tags = {"tags": {"Environment": "dev", "Project": "media-pipeline"}}
    reported = analyze(
        "required-tags",
        "pulumi:providers:aws",
        {"defaultTags": json.dumps(tags)},
        {"environmentSuffix": "dev"},
    )
    assert reported == [
        "defaultTags.tags is missing ['Owner', 'CostCenter', "
        "'DataClassification', 'Compliance', 'ManagedBy'] (G4)"
    ]


def test_o4_plain_unwraps_proxies_and_marks_unknowns():
    proxied = unknown_checking_proxy({"a": [{"b": UNKNOWN_STRING_VALUE}, "x"], "c": 1.0})
    assert plain(proxied) == {"a": [{"b": UNKNOWN}, "x"], "c": 1.0}
    assert plain({"a": ("t",)}) == {"a": ["t"]}
    # An unknown list element or top-level value is refused by the proxy, not handed out.
    proxied = unknown_checking_proxy({"l": ["x", UNKNOWN_BOOLEAN_VALUE], "s": UNKNOWN_STRING_VALUE})
    assert plain(proxied) == {"l": ["x", UNKNOWN], "s": UNKNOWN}


# --- offline plan ----------------------------------------------------------------------------


def test_o4_plan_report_counts_checked_resources_per_rule(stack_runs):
    lines, failed = render_policy_report(stack_runs["prod"], PolicyConfig.for_stack("prod"))
    assert failed == 0
    assert lines[-1] == "PASSED: 0 mandatory, 0 advisory violation(s)"
    rotation = next(line for line in lines if line.startswith("kms-key-rotation"))
    keys = len(stack_runs["prod"].of_type("aws:kms/key:Key"))
    assert rotation.split() == [
        "kms-key-rotation",
        "mandatory",
        str(keys),
        "checked",
        "0",
        "violation(s)",
    ]
    assert len(lines) == len(build_rules(PolicyConfig("prod", True))) + 1


def test_o4_plan_report_lists_violations(stack_runs):
    lines, failed = render_policy_report(stack_runs["dev"], PolicyConfig("dev", True))
    assert failed > 0
    assert lines[-1].startswith(f"FAILED: {failed} mandatory")
    assert any(
        line.strip().startswith("audit-bucket: forceDestroy must be false") for line in lines
    )


def test_o4_plan_prints_the_report_and_passes(capsys, shared_plan_main):
    assert shared_plan_main(["dev"]) == 0
    out = capsys.readouterr().out
    assert "Policy pack (policy/policy-config.dev.json):" in out
    assert "PASSED: 0 mandatory, 0 advisory violation(s)" in out

"""Offline plan: evaluate a stack under the mocks and print its resources as a tree.

    python -m offline.plan [STACK] [--region REGION]

No AWS account and no Pulumi CLI: the same `offline.engine.run_stack` the tests use runs the
real `__main__.py`, then each component is printed with its children (type, physical name, key
security settings), followed by a count per resource type and the policy pack's report (the
rules of `policy/rules.py` with the stack's `policy/policy-config.<stack>.json`); exit code 1
when a mandatory rule is violated, as `pulumi preview --policy-pack policy` would fail.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from typing import Any

from offline.engine import ProgramRun, Registered, run_stack
from policy.rules import PolicyConfig, build_rules, evaluate
from stack_config import ConfigError

# Inputs that carry a physical name, in order of preference.
NAME_KEYS = (
    "name",
    "bucket",
    "clusterIdentifier",
    "identifier",
    "replicationGroupId",
    "family",
    "functionName",
    "stageName",
    "creationToken",
    "serviceName",
)

# Inputs worth seeing in a security review, shown when present.
SECURITY_KEYS = (
    "enableKeyRotation",
    "deletionWindowInDays",
    "kmsKeyId",
    "kmsMasterKeyId",
    "kmsKeyArn",
    "masterUserSecretKmsKeyId",
    "performanceInsightsKmsKeyId",
    "storageEncrypted",
    "encrypted",
    "encryptionType",
    "atRestEncryptionEnabled",
    "transitEncryptionEnabled",
    "multiAzEnabled",
    "automaticFailoverEnabled",
    "deletionProtection",
    "skipFinalSnapshot",
    "recoveryWindowInDays",
    "forceDestroy",
    "forceDelete",
    "retentionInDays",
    "mapPublicIpOnLaunch",
    "publiclyAccessible",
    "trafficType",
    "logDestination",
    "imageTagMutability",
    "apiKeyRequired",
    "authorization",
    "xrayTracingEnabled",
    "enforceConsumerDeletion",
    "availabilityZone",
    "enableLogFileValidation",
    "isMultiRegionTrail",
    "cidrBlock",
    # Delivery (M7-M9): CloudFront's region, edges, protocols, signing and access logs.
    "region",
    "priceClass",
    "httpVersion",
    "isIpv6Enabled",
    "retainOnDelete",
    "scope",
    "originAccessControlOriginType",
    "signingBehavior",
    "authorizationType",
    "logType",
)


def short(value: Any, aliases: dict[str, str]) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if text in aliases:
        return aliases[text]
    if text.startswith("arn:") and len(text) > 60:
        return "…" + text.rsplit(":", 1)[-1][-40:]
    return text


def key_aliases(run: ProgramRun) -> dict[str, str]:
    """Key ARN -> alias name, so the plan says `alias/media-database-key-dev`, not a UUID."""
    key_arn_by_id = {
        r.state.get("keyId"): r.state.get("arn") for r in run.of_type("aws:kms/key:Key")
    }
    return {
        key_arn_by_id[a.inputs["targetKeyId"]]: a.inputs["name"]
        for a in run.of_type("aws:kms/alias:Alias")
        if a.inputs.get("targetKeyId") in key_arn_by_id
    }


def describe(resource: Registered, aliases: dict[str, str]) -> str:
    name = next((resource.inputs[k] for k in NAME_KEYS if resource.inputs.get(k)), "")
    tags = resource.inputs.get("tags")
    name = name or (tags.get("Name", "") if isinstance(tags, dict) else "")
    settings = [
        f"{k}={short(resource.inputs[k], aliases)}"
        for k in SECURITY_KEYS
        if k in resource.inputs and resource.inputs[k] not in (None, "")
    ]
    kind = resource.type if resource.custom else f"[{resource.type}]"
    parts = [f"{resource.name}  {kind}"]
    if name:
        parts.append(f"name={name}")
    # Engine options a reviewer must see: what `pulumi destroy` refuses or leaves behind (G3).
    options = [
        flag
        for flag, on in (
            ("PROTECTED", resource.protect),
            ("RETAINED-ON-DELETE", resource.retain_on_delete),
        )
        if on
    ]
    return "  ".join(parts + settings + options)


def render_tree(run: ProgramRun) -> list[str]:
    children: dict[str, list[Registered]] = defaultdict(list)
    urns = {r.urn for r in run.resources}
    roots = []
    for resource in run.resources:
        if resource.parent_urn in urns:
            children[resource.parent_urn].append(resource)
        else:
            roots.append(resource)
    aliases = key_aliases(run)
    lines: list[str] = []

    def walk(resource: Registered, prefix: str, last: bool) -> None:
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{describe(resource, aliases)}")
        kids = children.get(resource.urn, [])
        for index, kid in enumerate(kids):
            walk(kid, prefix + ("   " if last else "│  "), index == len(kids) - 1)

    for index, root in enumerate(roots):
        walk(root, "", index == len(roots) - 1)
    return lines


def render_counts(run: ProgramRun) -> list[str]:
    counts = Counter(r.type for r in run.resources if r.custom)
    lines = [f"{count:4d}  {token}" for token, count in sorted(counts.items())]
    lines.append(
        f"{sum(counts.values()):4d}  resources "
        f"({len([r for r in run.resources if not r.custom])} components)"
    )
    return lines


def render_policy_report(run: ProgramRun, config: PolicyConfig) -> tuple[list[str], int]:
    """The policy pack's rules over this run: resources checked and violations per rule (O4),
    and how many mandatory violations there are (a real preview would fail on any)."""
    rules = build_rules(config)
    checked, findings = evaluate(rules, [(r.type, r.name, r.inputs) for r in run.resources])
    width = max(len(rule.name) for rule in rules)
    lines = []
    for rule in rules:
        found = [f for f in findings if f.rule == rule.name]
        level = "mandatory" if rule.mandatory else "advisory"
        lines.append(
            f"{rule.name:<{width}}  {level:<9}  {checked[rule.name]:4d} checked  "
            f"{len(found)} violation(s)"
        )
        lines += [f"    {f.resource}: {f.message}" for f in found]
    failed = sum(1 for f in findings if f.mandatory)
    lines.append(
        f"{'PASSED' if not failed else 'FAILED'}: {failed} mandatory, "
        f"{len(findings) - failed} advisory violation(s)"
    )
    return lines, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", nargs="?", default="dev")
    parser.add_argument("--region", help="override aws:region for this evaluation")
    args = parser.parse_args(argv)
    overrides = {"aws:region": args.region} if args.region else None
    started = time.monotonic()
    try:
        run = run_stack(args.stack, overrides)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"Stack {args.stack} in {run.region} (offline evaluation, nothing deployed)\n")
    print("\n".join(render_tree(run)))
    print("\nResources by type:")
    print("\n".join(render_counts(run)))
    print(f"\nPolicy pack (policy/policy-config.{args.stack}.json):")
    report, failed = render_policy_report(run, PolicyConfig.for_stack(args.stack))
    print("\n".join(report))
    for warning in run.warnings:
        print(f"warning: {warning}")
    print(f"\nEvaluated in {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

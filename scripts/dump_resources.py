"""Dump every registered resource of every stack file in every test region, for comparing a
refactor before and after (type, logical name, parent, resolved inputs, options).

    python -m scripts.dump_resources OUT.json

Code archives and the worker image are rebuilt from `services/` on every run, so a change to
the services' code changes the Lambda packages' hash and path, the migration trigger's code
hash, and the image's content tag and digest; `--mask-code` replaces those with markers so a
diff shows only infrastructure changes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from offline.engine import run_stack

STACKS = ("dev", "prod")
REGIONS = ("eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1")
CODE_INPUTS = ("sourceCodeHash", "code")


CODE_DERIVED = (
    (re.compile(r"sha256:[0-9a-f]{64}"), "sha256:<code>"),
    (re.compile(r"src-[0-9a-f]{16}"), "src-<code>"),
    (re.compile(r'"code": "[A-Za-z0-9+/=]{44}"'), '"code": "<code>"'),
)


def _mask(inputs: dict) -> dict:
    text = json.dumps(
        {k: ("<code>" if k in CODE_INPUTS else v) for k, v in inputs.items()}, default=str
    )
    for pattern, marker in CODE_DERIVED:
        text = pattern.sub(marker, text)
    return json.loads(text)


def dump(mask_code: bool) -> dict:
    everything = {}
    for stack in STACKS:
        for region in REGIONS:
            run = run_stack(stack, {"aws:region": region})
            rows = []
            for r in run.resources:
                inputs = _mask(r.inputs) if mask_code else r.inputs
                rows.append(
                    {
                        "urn": r.urn,
                        "type": r.type,
                        "name": r.name,
                        "parent": r.parent_urn,
                        "inputs": inputs,
                        "protect": r.protect,
                        "retain": r.retain_on_delete,
                        "ignore": sorted(r.ignore_changes),
                        "deps": sorted(r.dependencies),
                    }
                )
            rows.sort(key=lambda row: row["urn"])
            everything[f"{stack}/{region}"] = {"resources": rows, "outputs": run.outputs}
    return everything


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--mask-code", action="store_true")
    args = parser.parse_args(argv)
    Path(args.out).write_text(
        json.dumps(dump(args.mask_code), indent=1, sort_keys=True, default=str)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Renders `Pulumi.yaml` from `components.settings.CONFIG_KEYS` so the two never drift.

`python -m offline.schema > Pulumi.yaml` (or `make schema`) after adding a key.
"""

from __future__ import annotations

import yaml

from components.settings import CONFIG_KEYS, PROJECT

HEADER = {
    "name": PROJECT,
    "description": "Secure, highly available video-processing platform on AWS "
                   "(network, keys, Aurora, cache, stream, queue, Fargate workers, API, audit).",
    "runtime": {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}},
}


def config_block() -> dict:
    block = {}
    for key in CONFIG_KEYS:
        entry: dict = {"type": key.pulumi_type, "description": key.description}
        if key.pulumi_type == "array":
            entry["items"] = {"type": "string"}
        entry["default"] = str(key.default) if key.kind == "number" else key.default
        block[key.name] = entry
    return block


def render_project_file() -> str:
    document = {**HEADER, "config": config_block()}
    comment = ("# Generated from components/settings.py CONFIG_KEYS by `make schema`; "
               "edit the keys there.\n")
    return comment + yaml.safe_dump(document, sort_keys=False, width=100)


if __name__ == "__main__":
    print(render_project_file(), end="")

"""Renders `Pulumi.yaml` from `components.settings.CONFIG_KEYS` so the two never drift.

`python -m offline.schema` (or `make schema`) after adding a key rewrites both `Pulumi.yaml`
and the README's config table.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from components.settings import CONFIG_KEYS, PROJECT

ROOT = Path(__file__).resolve().parent.parent

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


def render_config_table() -> str:
    """The README's config table (between its config-table markers)."""
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for key in CONFIG_KEYS:
        default = "`" + str(key.default).lower() + "`" if isinstance(key.default, bool) \
            else f"`{key.default}`" if key.default not in ("", []) else "(empty)"
        rows.append(f"| `{key.name}` | {key.kind} | {default} | {key.description} |")
    return "\n".join(rows) + "\n"


README_START = "<!-- config-table:start -->\n"
README_END = "<!-- config-table:end -->"


def render_readme(text: str) -> str:
    head, rest = text.split(README_START, 1)
    _old, tail = rest.split(README_END, 1)
    return head + README_START + render_config_table() + README_END + tail


def render_project_file() -> str:
    document = {**HEADER, "config": config_block()}
    comment = ("# Generated from components/settings.py CONFIG_KEYS by `make schema`; "
               "edit the keys there.\n")
    return comment + yaml.safe_dump(document, sort_keys=False, width=100)


def write_all() -> None:
    (ROOT / "Pulumi.yaml").write_text(render_project_file())
    readme = ROOT / "README.md"
    readme.write_text(render_readme(readme.read_text()))


if __name__ == "__main__":
    write_all()

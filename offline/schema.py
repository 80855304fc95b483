"""Renders `Pulumi.yaml`'s `config:` block and the README's config table from the tunables the
tiers declare (`stack_config.declared_keys`), so neither can drift from the code.

`python -m offline.schema` (or `make schema`) after adding or changing a tunable rewrites both;
a test fails while either is stale.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from components.tunables import Tunable
from stack_config import PROJECT, declared_keys

ROOT = Path(__file__).resolve().parent.parent

HEADER = {
    "name": PROJECT,
    "description": "Secure, highly available video-processing platform on AWS "
    "(network, keys, Aurora, cache, stream, queue, media buckets, Fargate workers, CloudFront "
    "delivery, API, audit).",
    "runtime": {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}},
}


def allowed_text(declared: Tunable) -> str:
    """What a key allows, in the words its validation messages use."""
    parts = []
    if declared.choices is not None:
        parts.append("one of " + ", ".join(map(str, declared.options)))
    if declared.ranged:
        parts.append(declared.range_text())
    if declared.allowed:
        parts.append(declared.allowed)
    return "; ".join(parts)


def config_block() -> dict:
    block = {}
    for _tier, _name, declared in declared_keys():
        description = declared.description
        if allowed := allowed_text(declared):
            description += f" Allowed: {allowed}."
        entry: dict = {
            "type": "string" if declared.kind == "number" else declared.kind,
            "description": description,
        }
        if declared.kind == "array":
            entry["items"] = {"type": "string"}
        if not declared.default_from:
            entry["default"] = declared.to_config()
        block[declared.key] = entry
    return block


def _default_cell(declared: Tunable) -> str:
    if declared.default_from:
        return f"({declared.default_from})"
    default = declared.to_config()
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return "(empty)" if default in ("", []) else f"`{default}`"


def render_config_table() -> str:
    """The README's config table (between its config-table markers)."""
    rows = ["| Tier | Key | Type | Default | Allowed | Description |", "|---|---|---|---|---|---|"]
    for tier, _name, declared in declared_keys():
        allowed = allowed_text(declared).replace("|", "\\|")
        rows.append(
            f"| {tier.TIER} | `{declared.key}` | {declared.kind} | "
            f"{_default_cell(declared)} | {allowed} | {declared.description} |"
        )
    return "\n".join(rows) + "\n"


README_START = "<!-- config-table:start -->\n"
README_END = "<!-- config-table:end -->"


def render_readme(text: str) -> str:
    head, rest = text.split(README_START, 1)
    _old, tail = rest.split(README_END, 1)
    return head + README_START + render_config_table() + README_END + tail


def render_project_file() -> str:
    document = {**HEADER, "config": config_block()}
    comment = (
        "# Generated from the tunables declared in components/ (see components/"
        "tunables.py) by `make schema`; edit the declarations there.\n"
    )
    return comment + yaml.safe_dump(document, sort_keys=False, width=100)


def write_all() -> None:
    (ROOT / "Pulumi.yaml").write_text(render_project_file())
    readme = ROOT / "README.md"
    readme.write_text(render_readme(readme.read_text()))


if __name__ == "__main__":
    write_all()

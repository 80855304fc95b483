"""G9: the README's test command measures line coverage of `components/` and `services/`,
fails under 90 %, prints the report, and is what CI runs."""

from __future__ import annotations

import re
import shlex
import tomllib

from offline.engine import ROOT


def make_recipe(target: str) -> list[str]:
    """The commands of a Makefile target (its tab-indented lines)."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{target}\s*:", line))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_g9_make_test_runs_every_test_measuring_components_and_services():
    (command,) = make_recipe("test")
    words = shlex.split(command)
    assert words[:3] == ["$(PYTHON)", "-m", "pytest"]
    arguments = words[3:]
    assert {"--cov=components", "--cov=services"} <= set(arguments)
    assert any(w.startswith("--cov-report=term-missing") for w in arguments)  # printed in CI
    # Nothing narrows the run or lowers the bar on the command line.
    assert [
        w
        for w in arguments
        if w in ("-m", "-k", "--no-cov", "--deselect")
        or w.startswith(("--cov-fail-under", "--ignore"))
    ] == []
    assert [w for w in arguments if not w.startswith("-")] == []  # no path: every test


def test_g9_coverage_config_fails_under_90_percent_of_both_packages():
    config = pyproject()["tool"]["coverage"]
    assert config["run"]["source"] == ["components", "services"]
    assert config["report"]["fail_under"] == 90
    pytest_options = pyproject()["tool"]["pytest"]["ini_options"]
    assert pytest_options["testpaths"] == ["tests"]
    assert not re.search(r"(^|\s)(-m|-k|--no-cov|--cov-fail-under)\b", pytest_options["addopts"])


def test_g9_readme_and_ci_use_make_test():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make test\s", readme, re.MULTILINE)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "make test" in ci
    workflow = (ROOT / ".github" / "workflows" / "tests.yml").read_text()
    assert re.search(r"^\s+run: make test$", workflow, re.MULTILINE)

"""pyproject.toml and environment.yml list the same dependencies; the README commands exist."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env_lines = (ROOT / "environment.yml").read_text().splitlines()
    start = env_lines.index("  - pip:")
    listed = {normalise(line.strip()[2:]) for line in env_lines[start + 1:] if line.strip().startswith("- ")}
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"


def test_readme_commands_are_the_scripts_ci_calls():
    readme = (ROOT / "README.md").read_text()
    assert "./run.sh" in readme and "./test.sh" in readme
    assert "./test.sh" in (ROOT / ".ci" / "run").read_text()

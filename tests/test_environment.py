"""environment.yml and pyproject.toml pin the same direct dependencies."""

import re
import tomllib

import yaml

from cbirlib import paths


def _pins(lines):
    pins = {}
    for line in lines:
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_pins_agree():
    project = tomllib.loads((paths.repo_root() / "pyproject.toml").read_text())["project"]
    py = _pins(project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((paths.repo_root() / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == py
    assert "python=3.11" in env["dependencies"]
    for required in ("jupyterlab", "papermill", "torch", "torchvision", "scikit-learn",
                     "scikit-image", "numpy", "pandas", "seaborn", "matplotlib", "tqdm", "pytest"):
        assert required in py, required
    assert py["torch"] == "2.14.1" and py["torchvision"] == "0.29.1"

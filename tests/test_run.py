"""Runner: profile handling, table comparison, failure isolation."""

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from cbirlib import paths, run


def test_profiles_parse_and_only_set_declared_parameters():
    notebooks = run.discover_notebooks()
    assert "01" in notebooks
    for name in run.PROFILES:
        profile = run.load_profile(name)
        for number, nb in notebooks.items():
            params = run.notebook_parameters(nb, profile, number)
            assert params.get("profile", name) == name


def test_unknown_profile_and_unknown_parameter(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        run.load_profile("medium")
    profile = {"common": {"seed": 1}, "notebooks": {"01": {"no_such_parameter": 3}}}
    with pytest.raises(ValueError, match="no_such_parameter"):
        run.notebook_parameters(run.discover_notebooks()["01"], profile, "01")


def _tables(root: Path, frame: pd.DataFrame, name="t.csv"):
    root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / name, index=False)


def test_compare_tables_tolerance_timing_columns_and_text(tmp_path):
    base = pd.DataFrame({"method": ["a", "b"], "mAP": [0.5, 0.25], "time_ms": [1.0, 2.0]})
    _tables(tmp_path / "old", base)
    _tables(tmp_path / "new", base.assign(mAP=[0.5 + 1e-12, 0.25], time_ms=[9.0, 9.0]))
    assert run.compare_tables(tmp_path / "old", tmp_path / "new",
                              ignore_columns=r"time") == []
    assert run.compare_tables(tmp_path / "old", tmp_path / "new", ignore_columns=None)
    _tables(tmp_path / "new", base.assign(mAP=[0.5, 0.26]))
    diff = run.compare_tables(tmp_path / "old", tmp_path / "new", atol=1e-3, rtol=0)
    assert len(diff) == 1 and "'mAP'" in diff[0] and "row 1" in diff[0]
    assert run.compare_tables(tmp_path / "old", tmp_path / "new", atol=0.02, rtol=0) == []
    _tables(tmp_path / "new", base.assign(method=["a", "c"]))
    assert "'method'" in run.compare_tables(tmp_path / "old", tmp_path / "new")[0]
    _tables(tmp_path / "new", base.iloc[:1])
    assert "shape" in run.compare_tables(tmp_path / "old", tmp_path / "new")[0]
    (tmp_path / "new" / "t.csv").unlink()
    assert "missing" in run.compare_tables(tmp_path / "old", tmp_path / "new")[0]


def _mini_repo(tmp_path: Path, cells: list[str]) -> Path:
    """A repository root with one notebook made of the given code cells."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "profiles").mkdir()
    shutil.copytree(paths.claims_dir(), root / "data" / "claims")
    (root / "pyproject.toml").write_text("")
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("seed: int = 0  # seed")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "notebooks" / "01_toy.ipynb")
    for p in run.PROFILES:
        (root / "profiles" / f"{p}.yaml").write_text("common:\n  seed: 0\n")
    return root


WRITE = ("from cbirlib import paths\n"
         "(paths.results_dir(1) / 'table.csv').write_text('a,b\\n1,{v}\\n')")


@pytest.mark.slow
def test_failing_notebook_names_cell_and_keeps_earlier_results(tmp_path, monkeypatch):
    root = _mini_repo(tmp_path, [WRITE.format(v=2)])
    monkeypatch.setenv("CBIR_ROOT", str(root))
    monkeypatch.delenv("CBIR_RESULTS", raising=False)
    assert run.main(["--profile", "smoke", "--no-progress"]) == 0
    table = root / "results" / "01" / "table.csv"
    assert table.read_text() == "a,b\n1,2\n"
    assert (root / "results" / "01" / "01_toy.html").is_file()
    manifest = json.loads((root / "results" / "manifest.json").read_text())
    assert manifest["notebooks"]["01"]["parameters"] == {"seed": 0}
    assert "torch" in manifest["versions"]
    # --check passes when nothing changed
    assert run.main(["--profile", "smoke", "--no-progress", "--check"]) == 0
    # a notebook that writes a different table and then fails
    root2 = _mini_repo(tmp_path / "b", [WRITE.format(v=3), "raise RuntimeError('boom')"])
    shutil.copytree(root / "results", root2 / "results")
    monkeypatch.setenv("CBIR_ROOT", str(root2))
    with pytest.raises(run.NotebookFailed, match=r"01_toy.ipynb failed in cell .*boom"):
        run.run_notebooks("smoke", progress=False)
    assert (root2 / "results" / "01" / "table.csv").read_text() == "a,b\n1,2\n"
    assert (root2 / "results" / ".failed" / "01" / "01_toy.ipynb").is_file()
    # a notebook that succeeds with a different table fails the --check
    root3 = _mini_repo(tmp_path / "c", [WRITE.format(v=3)])
    shutil.copytree(root / "results", root3 / "results")
    monkeypatch.setenv("CBIR_ROOT", str(root3))
    with pytest.raises(run.NotebookFailed, match="differ from the committed"):
        run.run_notebooks("smoke", progress=False, check=True)


def test_compare_tables_skips_timing_rows_by_unit(tmp_path):
    base = pd.DataFrame({"row": ["mAP", "Retrieval Time (ms)"], "unit": ["%", "ms"],
                         "reproduced": [12.5, 4.0], "verdict": ["not reproduced", "reproduced"]})
    _tables(tmp_path / "old", base, "claims.csv")
    _tables(tmp_path / "new", base.assign(reproduced=[12.5, 9.0],
                                          verdict=["not reproduced", "not reproduced"]), "claims.csv")
    assert run.compare_tables(tmp_path / "old", tmp_path / "new") == []
    _tables(tmp_path / "new", base.assign(reproduced=[13.5, 4.0]), "claims.csv")
    assert "'reproduced'" in run.compare_tables(tmp_path / "old", tmp_path / "new")[0]

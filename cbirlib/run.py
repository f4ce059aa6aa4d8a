"""Run the notebooks in order with papermill: ``python -m cbirlib.run``.

Usage::

    python -m cbirlib.run --profile quick            # all notebooks, in order
    python -m cbirlib.run --profile smoke --only 01  # one notebook
    python -m cbirlib.run --profile quick --check    # and compare with committed tables

Parameters come from ``profiles/<profile>.yaml``: the ``common`` mapping (passed
to every notebook that declares the name in its ``parameters`` cell) and the
per-notebook mapping under ``notebooks: {"NN": {...}}`` (every name must be
declared there, so a typo fails loudly).

Each notebook executes into a staging folder (``results/.staging/NN``); only
when it finishes without error does the folder replace ``results/NN``, with the
executed notebook and an HTML rendering in it. A failing notebook stops the run
with exit status 1 and a message naming the notebook and the cell; its partial
outputs go to ``results/.failed/NN`` and the earlier ``results/NN`` stays as it
was. ``results/manifest.json`` records the git commit, package versions, the
profile, the parameters (seeds among them) and the duration of each notebook.
``results/claims_summary.csv`` and ``results/claims_counts.csv`` are regenerated
at the end (:func:`cbirlib.claims.summarize`).

With ``--check`` the tables (``*.csv``) committed under ``results/NN`` and the
split manifest are read before a notebook runs and compared with what it
writes, with the tolerances of the profile's ``check`` mapping
(:func:`compare_tables`; ``check: notebooks: {"NN": {...}}`` overrides them for
one notebook, e.g. one that trains networks); any difference beyond them fails
the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import claims as _claims
from . import paths
from ._io import atomic_write_text

__all__ = [
    "PROFILES",
    "NotebookFailed",
    "discover_notebooks",
    "load_profile",
    "notebook_parameters",
    "compare_tables",
    "run_notebooks",
    "main",
]

PROFILES = ("smoke", "quick", "full")

#: Packages whose versions go into the manifest.
_PACKAGES = ("numpy", "pandas", "scipy", "scikit-learn", "scikit-image", "torch", "torchvision",
             "matplotlib", "seaborn", "papermill", "faiss-cpu", "pillow", "tqdm", "pyyaml")


class NotebookFailed(RuntimeError):
    """A notebook raised an error; the message names the notebook and the cell."""


@dataclass
class _Check:
    atol: float = 1e-9
    rtol: float = 1e-6
    ignore_columns: str = r"(?i)(time|_ms$|_s$|seconds|duration|latency|speed)"
    skip_files: list[str] = field(default_factory=list)
    notebooks: dict = field(default_factory=dict)

    def for_notebook(self, number: str) -> "_Check":
        """The tolerances for one notebook: its ``notebooks: {NN: {...}}`` entry overrides."""
        own = {f"{int(k):02d}": v for k, v in self.notebooks.items()}.get(number, {})
        base = {k: v for k, v in self.__dict__.items() if k != "notebooks"}
        return _Check(**{**base, **own})


def discover_notebooks(directory: str | os.PathLike | None = None) -> dict[str, Path]:
    """Return ``{"01": Path("notebooks/01_data_splits.ipynb"), ...}`` in order."""
    directory = Path(directory) if directory is not None else paths.notebooks_dir()
    found = {}
    for nb in sorted(directory.glob("[0-9][0-9]_*.ipynb")):
        found[nb.name[:2]] = nb
    return found


def load_profile(name: str, *, directory: str | os.PathLike | None = None) -> dict:
    """Read ``profiles/<name>.yaml`` and check its shape."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES}")
    directory = Path(directory) if directory is not None else paths.profiles_dir()
    path = directory / f"{name}.yaml"
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"profile file {path} is missing") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    unknown = set(profile) - {"common", "notebooks", "check"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}")
    profile.setdefault("common", {})
    profile["notebooks"] = {f"{int(k):02d}": (v or {}) for k, v in
                            (profile.get("notebooks") or {}).items()}
    profile["common"]["profile"] = name
    return profile


def notebook_parameters(notebook: str | os.PathLike, profile: dict, number: str) -> dict:
    """Parameters for one notebook: the declared ``common`` ones plus its own.

    Raises
    ------
    ValueError
        If the profile sets a notebook parameter the notebook does not declare.
    """
    import papermill

    declared = set(papermill.inspect_notebook(str(notebook)))
    own = profile["notebooks"].get(number, {})
    unknown = set(own) - declared
    if unknown:
        raise ValueError(f"profile sets {sorted(unknown)} for notebook {Path(notebook).name}, "
                         f"which declares only {sorted(declared)} in its parameters cell")
    params = {k: v for k, v in profile["common"].items() if k in declared}
    params.update(own)
    return params


def _numeric(series: pd.Series) -> pd.Series | None:
    converted = pd.to_numeric(series, errors="coerce")
    if converted.notna().sum() == series.replace("", np.nan).notna().sum():
        return converted
    return None


#: Units that mark a row of a table with a ``unit`` column (e.g. ``claims.csv``)
#: as a timing: it depends on the machine and is not compared.
TIMING_UNITS = ("ms", "s", "us", "seconds")


def compare_tables(old: str | os.PathLike, new: str | os.PathLike, *, atol: float = 1e-9,
                   rtol: float = 1e-6, ignore_columns: str | None = None,
                   skip_files: tuple[str, ...] = ()) -> list[str]:
    """Compare every ``*.csv`` under ``old`` with the same file under ``new``.

    Tables must have the same shape, the same column names and the same
    non-numeric cells; numeric columns must agree within
    ``abs(a - b) <= atol + rtol * abs(a)`` (NaN equals NaN). Columns whose names
    match ``ignore_columns`` (timings) are skipped, as are rows whose ``unit``
    column is one of :data:`TIMING_UNITS` (timing claims in ``claims.csv``; only
    their presence is checked) and files matching a glob in ``skip_files``. A
    table missing from ``new`` is a difference.
    Used by ``cbirlib.run --check`` (CI's regeneration check).

    Returns
    -------
    list of str
        One message per difference; empty when everything agrees.
    """
    old, new = Path(old), Path(new)
    problems = []
    pattern = re.compile(ignore_columns) if ignore_columns else None
    for a_path in sorted(old.rglob("*.csv")):
        rel = a_path.relative_to(old)
        if any(rel.match(glob) for glob in skip_files):
            continue
        b_path = new / rel
        if not b_path.is_file():
            problems.append(f"{rel}: missing after regeneration")
            continue
        a = pd.read_csv(a_path, dtype=str, keep_default_na=False)
        b = pd.read_csv(b_path, dtype=str, keep_default_na=False)
        if list(a.columns) != list(b.columns) or a.shape != b.shape:
            problems.append(f"{rel}: shape/columns changed {a.shape} {list(a.columns)[:8]} -> "
                            f"{b.shape} {list(b.columns)[:8]}")
            continue
        if "unit" in a.columns:
            keep = ~a["unit"].isin(TIMING_UNITS).to_numpy()
            if not (a["unit"].to_numpy() == b["unit"].to_numpy()).all():
                problems.append(f"{rel}: column 'unit' changed")
                continue
            a = a.loc[keep].reset_index(drop=True)
            b = b.loc[keep].reset_index(drop=True)
        for col in a.columns:
            if pattern is not None and pattern.search(str(col)):
                continue
            x, y = _numeric(a[col]), _numeric(b[col])
            if x is not None and y is not None:
                xv, yv = x.to_numpy(float), y.to_numpy(float)
                same = np.isclose(yv, xv, atol=atol, rtol=rtol, equal_nan=True)
                if not same.all():
                    i = int(np.flatnonzero(~same)[0])
                    problems.append(f"{rel}: column {col!r} differs in {int((~same).sum())} rows, "
                                    f"e.g. row {i}: {xv[i]!r} -> {yv[i]!r} "
                                    f"(atol {atol:g}, rtol {rtol:g})")
            elif not a[col].equals(b[col]):
                i = int(np.flatnonzero((a[col] != b[col]).to_numpy())[0])
                problems.append(f"{rel}: column {col!r} row {i}: {a[col][i]!r} -> {b[col][i]!r}")
    return problems


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=paths.repo_root(), capture_output=True,
                             text=True, timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _html(executed: Path) -> None:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    atomic_write_text(executed.with_suffix(".html"), body)


def _swap_in(stage: Path, final: Path) -> None:
    old = final.with_name(f".old-{final.name}")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    stage.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _execute(nb: Path, number: str, params: dict, results: Path, *, progress: bool) -> float:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    stage = results / ".staging" / number
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    executed = stage / nb.name
    env_before = {k: os.environ.get(k) for k in ("CBIR_STAGE_NOTEBOOK", "CBIR_STAGE_DIR",
                                                 "MPLBACKEND", "CBIR_RESULTS")}
    os.environ.update({"CBIR_STAGE_NOTEBOOK": number, "CBIR_STAGE_DIR": str(stage),
                       "MPLBACKEND": "agg", "CBIR_RESULTS": str(results)})
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(nb), str(executed), parameters=params,
                                   cwd=str(paths.repo_root()), kernel_name="python3",
                                   progress_bar=progress, report_mode=False)
    except PapermillExecutionError as exc:
        failed = results / ".failed" / number
        if failed.exists():
            shutil.rmtree(failed)
        failed.parent.mkdir(parents=True, exist_ok=True)
        stage.rename(failed)
        raise NotebookFailed(
            f"notebook {nb.name} failed in cell {exc.cell_index} (execution count "
            f"{exc.exec_count}): {exc.ename}: {exc.evalue}. The partial notebook is in "
            f"{failed / nb.name}; results/{number} was left as it was.") from None
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    duration = time.perf_counter() - start
    _html(executed)
    _swap_in(stage, results / number)
    return duration


def run_notebooks(profile: str, *, only: list[str] | None = None,
                  results: str | os.PathLike | None = None, check: bool = False,
                  progress: bool = True) -> dict:
    """Execute notebooks in order; see the module docstring.

    Returns the manifest (also written to ``results/manifest.json``).

    Raises
    ------
    NotebookFailed
        If a notebook fails, or (with ``check``) a table differs beyond tolerance.
    """
    config = load_profile(profile)
    check_cfg = _Check(**(config.get("check") or {}))
    notebooks = discover_notebooks()
    wanted = [f"{int(x):02d}" for x in only] if only else list(notebooks)
    missing = [n for n in wanted if n not in notebooks]
    if missing:
        raise ValueError(f"no notebook numbered {missing} in {paths.notebooks_dir()}; "
                         f"found {list(notebooks)}")
    results = Path(results) if results is not None else paths.results_dir()
    results.mkdir(parents=True, exist_ok=True)
    manifest_path = results / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.update({"profile": profile, "git_commit": _git("rev-parse", "HEAD"),
                     "git_dirty": bool(_git("status", "--porcelain")), "versions": _versions(),
                     "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}})
    manifest.setdefault("notebooks", {})
    problems: list[str] = []
    for number in wanted:
        nb = notebooks[number]
        params = notebook_parameters(nb, config, number)
        print(f"[cbirlib.run] {nb.name} ({profile}) {params}", flush=True)
        snapshot = None
        if check:
            snapshot = Path(tempfile.mkdtemp(prefix=f"cbir-check-{number}-"))
            if (results / number).is_dir():
                shutil.copytree(results / number, snapshot / number)
            split_manifest = paths.splits_dir() / "MANIFEST.json"
            if split_manifest.is_file():
                shutil.copy2(split_manifest, snapshot / "splits_manifest.json")
        duration = _execute(nb, number, params, results, progress=progress)
        manifest["notebooks"][number] = {"notebook": nb.name, "parameters": params,
                                         "duration_s": round(duration, 1), "status": "ok"}
        print(f"[cbirlib.run] {nb.name} done in {duration:.1f} s", flush=True)
        if snapshot is not None:
            tol = check_cfg.for_notebook(number)
            found = compare_tables(snapshot / number, results / number, atol=tol.atol,
                                   rtol=tol.rtol, ignore_columns=tol.ignore_columns,
                                   skip_files=tuple(tol.skip_files)) \
                if (snapshot / number).is_dir() else []
            old_split = snapshot / "splits_manifest.json"
            new_split = paths.splits_dir() / "MANIFEST.json"
            if old_split.is_file() and old_split.read_bytes() != new_split.read_bytes():
                found.append("data/splits/MANIFEST.json changed: split files are not "
                             "byte-identical to the committed ones")
            problems += [f"results/{number}/{p}" for p in found]
            shutil.rmtree(snapshot, ignore_errors=True)
        manifest["claims"] = {}
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    _, counts = _claims.summarize(results=results)
    manifest["claims"] = {paper: {k: int(v) for k, v in row.items()}
                          for paper, row in counts.iterrows()}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if problems:
        raise NotebookFailed("regenerated results differ from the committed ones beyond the "
                             "profile's tolerance:\n  " + "\n  ".join(problems))
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m cbirlib.run", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--only", help="comma-separated notebook numbers, e.g. 01,03")
    parser.add_argument("--results", help="results folder (default: results/ or $CBIR_RESULTS)")
    parser.add_argument("--check", action="store_true",
                        help="fail if regenerated tables differ from the committed ones")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else None
    try:
        run_notebooks(args.profile, only=only, results=args.results, check=args.check,
                      progress=not args.no_progress)
    except (NotebookFailed, ValueError, FileNotFoundError) as exc:
        print(f"[cbirlib.run] ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every location the compendium reads or writes, resolved in one place.

Locations are derived from the repository root, which is found by walking up
from this file to the folder holding ``pyproject.toml`` (override with
``$CBIR_ROOT``). No other module builds absolute paths of its own.

Environment variables
---------------------
CBIR_ROOT
    Repository root (default: found from this file).
CBIR_CACHE
    Unpacked-dataset and intermediate cache (default: ``<root>/data/cache``).
CBIR_DATA_MIRROR
    A folder holding the datasets' ``.tar.xz`` archives (e.g. ``../shared/data``).
    Unset means "no local mirror".
CBIR_SPLITS
    Split-file folder (default: ``<root>/data/splits``).
CBIR_RESULTS
    Results folder (default: ``<root>/results``).
CBIR_STAGE_NOTEBOOK, CBIR_STAGE_DIR
    Set by :mod:`cbirlib.run` only: the results of notebook ``NN`` go to a
    staging folder until the notebook has finished without error.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "repo_root",
    "data_dir",
    "splits_dir",
    "claims_dir",
    "cache_dir",
    "mirror_dir",
    "hashing_lists_dir",
    "results_dir",
    "notebooks_dir",
    "profiles_dir",
    "relative_to_root",
]


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else None


def repo_root() -> Path:
    """Return the repository root (``$CBIR_ROOT`` or the folder with ``pyproject.toml``)."""
    env = _env_path("CBIR_ROOT")
    if env is not None:
        return env
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "cbirlib").is_dir():
            return candidate
    raise RuntimeError(
        f"cannot find the repository root above {here}; set CBIR_ROOT to the "
        "folder holding pyproject.toml"
    )


def data_dir() -> Path:
    """Return ``<root>/data``: read-only raw inputs, split files and claims."""
    return repo_root() / "data"


def splits_dir() -> Path:
    """Return the split-file folder: ``$CBIR_SPLITS`` or ``<root>/data/splits``.

    Notebook 01 writes it; the tests point ``CBIR_SPLITS`` at a temporary folder
    so a smoke run never touches the committed split files.
    """
    return _env_path("CBIR_SPLITS") or (data_dir() / "splits")


def claims_dir() -> Path:
    """Return ``<root>/data/claims``, the transcribed paper claims (CSV)."""
    return data_dir() / "claims"


def cache_dir(*parts: str, create: bool = True) -> Path:
    """Return the cache folder (``$CBIR_CACHE`` or ``<root>/data/cache``), or a sub-folder.

    Parameters
    ----------
    *parts : str
        Sub-folder names, e.g. ``cache_dir("datasets")``.
    create : bool, keyword-only
        Create the folder if it is missing.
    """
    base = _env_path("CBIR_CACHE") or (data_dir() / "cache")
    path = base.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def mirror_dir() -> Path | None:
    """Return the local archive mirror ``$CBIR_DATA_MIRROR``, or ``None`` if unset."""
    return _env_path("CBIR_DATA_MIRROR")


def hashing_lists_dir() -> Path:
    """Folder of user-supplied hashing benchmark lists (:mod:`cbirlib.hashlists`).

    ``$CBIR_HASHING_LISTS`` if set, else ``cache_dir("hashing_lists")``.
    """
    return _env_path("CBIR_HASHING_LISTS") or cache_dir("hashing_lists", create=False)


def results_dir(notebook: str | int | None = None, *, create: bool = True) -> Path:
    """Return ``<root>/results`` or ``results/<NN>`` for a notebook number.

    Parameters
    ----------
    notebook : str or int, optional
        Notebook number, e.g. ``1`` or ``"01"``.
    create : bool, keyword-only
        Create the folder if it is missing.
    """
    base = _env_path("CBIR_RESULTS") or (repo_root() / "results")
    path = base if notebook is None else base / f"{int(notebook):02d}"
    # cbirlib.run executes a notebook into a staging folder and swaps it in only
    # on success, so a failing notebook leaves its earlier results intact.
    stage = _env_path("CBIR_STAGE_DIR")
    if notebook is not None and stage is not None and \
            os.environ.get("CBIR_STAGE_NOTEBOOK") == f"{int(notebook):02d}":
        path = stage
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def notebooks_dir() -> Path:
    """Return ``<root>/notebooks``."""
    return repo_root() / "notebooks"


def profiles_dir() -> Path:
    """Return ``<root>/profiles`` (``smoke.yaml``, ``quick.yaml``, ``full.yaml``)."""
    return repo_root() / "profiles"


def relative_to_root(path: str | os.PathLike) -> str:
    """Return ``path`` relative to the repository root, POSIX style, if it lies inside it."""
    p = Path(path).resolve()
    try:
        return p.relative_to(repo_root()).as_posix()
    except ValueError:
        return p.as_posix()

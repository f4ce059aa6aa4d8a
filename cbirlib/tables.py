"""Writing result tables: CSV, atomically, with fixed float formatting.

Every notebook writes its tables with :func:`save_table` into ``results/<nn>/``
(named after the paper's table, e.g. ``results/01/table1.csv``), so CI's
regeneration check (:func:`cbirlib.run.compare_tables`) can compare them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ._io import atomic_write

__all__ = ["save_table"]


def save_table(frame: pd.DataFrame, path: str | os.PathLike, *, index: bool = False,
               float_format: str = "%.6g") -> Path:
    """Write ``frame`` to ``path`` as CSV atomically; return the path.

    Parameters
    ----------
    frame : DataFrame
        The table.
    path : path-like
        Destination, e.g. ``paths.results_dir(1) / "table1.csv"``.
    index : bool, keyword-only
        Write the index as the first column.
    float_format : str, keyword-only
        printf-style format for floats (6 significant digits by default, so
        reruns do not differ in the last bits).
    """
    path = Path(path)
    if path.suffix != ".csv":
        raise ValueError(f"{path}: tables are written as .csv")
    with atomic_write(path) as fh:
        frame.to_csv(fh, index=index, lineterminator="\n", float_format=float_format)
    return path

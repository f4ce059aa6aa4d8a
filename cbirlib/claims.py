"""Paper claims and the verdicts our notebooks give them.

The claims registry is ``data/claims/p00N_<slug>.csv``: every numeric cell of the
tables listed in ``../shared/papers/README.md`` (plus quantitative statements in
the papers' text), transcribed once, with the columns :data:`CLAIM_COLUMNS`. A
claim is identified by its key ``(paper, table, row, column)``.

Each notebook records what it reproduced with a :class:`ClaimsRecorder`, which
looks the claim up, compares, and writes ``results/<nn>/claims.csv`` with one of
the :data:`VERDICTS`:

``reproduced``
    our value lies within the stated tolerance of the paper's;
``not reproduced``
    it does not (a finding, not a failure of the notebook);
``not checkable``
    the claim cannot be tested here (dataset or weights not available, stand-in
    used, protocol unknown); the reason is written beside it, and our value on
    the stand-in is still shown when we have one.

:func:`summarize` gathers every notebook's verdicts (run by ``cbirlib.run``)
and lists registry claims no notebook has addressed yet as ``pending``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import paths
from .tables import save_table

__all__ = [
    "CLAIM_COLUMNS",
    "RESULT_COLUMNS",
    "VERDICTS",
    "DEFAULT_TOLERANCE",
    "load_claims",
    "get_claim",
    "Tolerance",
    "ClaimsRecorder",
    "summarize",
]

#: Columns of the transcribed claims files in ``data/claims/``.
CLAIM_COLUMNS = ["paper", "table", "row", "column", "value", "std", "unit", "dataset",
                 "protocol", "source", "note"]

#: Columns of ``results/<nn>/claims.csv``.
RESULT_COLUMNS = ["paper", "table", "row", "column", "unit", "claimed", "claimed_std",
                  "reproduced", "reproduced_std", "difference", "tolerance", "verdict",
                  "our_protocol", "stand_in", "reason", "notebook"]

VERDICTS = ("reproduced", "not reproduced", "not checkable")

_KEY = ["paper", "table", "row", "column"]


@dataclass(frozen=True)
class Tolerance:
    """How close ``reproduced`` must be to ``claimed`` to count as reproduced.

    ``abs(reproduced - claimed) <= max(absolute, relative * abs(claimed))``.
    """

    absolute: float = 0.0
    relative: float = 0.0

    def allows(self, claimed: float, reproduced: float) -> bool:
        """Return True if ``reproduced`` is within tolerance of ``claimed``."""
        return abs(reproduced - claimed) <= max(self.absolute, self.relative * abs(claimed)) + 1e-12

    def describe(self) -> str:
        """Human-readable form, written next to each verdict."""
        parts = []
        if self.absolute:
            parts.append(f"abs {self.absolute:g}")
        if self.relative:
            parts.append(f"rel {self.relative:.0%}")
        return " or ".join(parts) if parts else "exact"


#: Default tolerance per unit: 2 percentage points for percentages, 0.02 for
#: fractions, 25% for times (they depend on the machine), exact for counts.
DEFAULT_TOLERANCE: dict[str, Tolerance] = {
    "%": Tolerance(absolute=2.0),
    "fraction": Tolerance(absolute=0.02),
    "ms": Tolerance(relative=0.25),
    "s": Tolerance(relative=0.25),
    "count": Tolerance(),
    "dB": Tolerance(absolute=1.0),
}


def _claims_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("p*.csv"))


def load_claims(paper: str | None = None, *,
                directory: str | os.PathLike | None = None) -> pd.DataFrame:
    """Return the claims registry (all papers, or one, e.g. ``"p000"``).

    Raises
    ------
    ValueError
        If a file lacks the :data:`CLAIM_COLUMNS`, a value is not a number, or a
        key ``(paper, table, row, column)`` occurs twice; the message names the file.
    """
    directory = Path(directory) if directory is not None else paths.claims_dir()
    frames = []
    for path in _claims_files(directory):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if list(frame.columns) != CLAIM_COLUMNS:
            raise ValueError(f"{path}: columns {list(frame.columns)}, expected {CLAIM_COLUMNS}")
        value = pd.to_numeric(frame["value"], errors="coerce")
        std = pd.to_numeric(frame["std"].where(frame["std"] != ""), errors="coerce")
        bad = value.isna() | (std.isna() & (frame["std"] != ""))
        if bad.any():
            row = frame.loc[bad].iloc[0]
            raise ValueError(f"{path}: non-numeric value/std ({row['value']!r}, {row['std']!r}) "
                             f"in row {tuple(row[_KEY])}; fix the transcription")
        dup = frame.duplicated(_KEY)
        if dup.any():
            raise ValueError(f"{path}: duplicate claim key {tuple(frame.loc[dup, _KEY].iloc[0])}")
        frame["value"], frame["std"] = value, std
        frame["file"] = path.name
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"no claims files p*.csv in {directory}")
    claims = pd.concat(frames, ignore_index=True)
    if paper is not None:
        claims = claims.loc[claims["paper"] == paper].reset_index(drop=True)
        if claims.empty:
            raise KeyError(f"no claims for paper {paper!r} in {directory}")
    return claims


def get_claim(claims: pd.DataFrame, paper: str, table: str, row: str, column: str) -> pd.Series:
    """Return one claim by key, with a helpful error listing near misses."""
    hit = claims.loc[(claims["paper"] == paper) & (claims["table"] == table)
                     & (claims["row"] == row) & (claims["column"] == column)]
    if len(hit) == 1:
        return hit.iloc[0]
    same_table = claims.loc[(claims["paper"] == paper) & (claims["table"] == table)]
    raise KeyError(
        f"no claim ({paper}, {table}, {row}, {column}); rows in that table: "
        f"{sorted(same_table['row'].unique())[:20]}, columns: "
        f"{sorted(same_table['column'].unique())[:20]}")


def _num(x) -> float:
    return float("nan") if x is None else float(x)


class ClaimsRecorder:
    """Collects a notebook's reproduced values and verdicts; writes ``claims.csv``.

    Parameters
    ----------
    notebook : str or int
        Notebook number, e.g. ``"01"``.
    claims : DataFrame, optional, keyword-only
        The registry (default :func:`load_claims`).

    Examples
    --------
    >>> rec = ClaimsRecorder("01")                                  # doctest: +SKIP
    >>> rec.record("p000", "Table 1", "CIFAR-10", "Training", 45000,
    ...            our_protocol="cifar10__45k-5k-10k")              # doctest: +SKIP
    >>> rec.write()                                                 # doctest: +SKIP
    """

    def __init__(self, notebook: str | int, *, claims: pd.DataFrame | None = None):
        self.notebook = f"{int(notebook):02d}"
        self.claims = load_claims() if claims is None else claims
        self._rows: dict[tuple, dict] = {}

    def record(self, paper: str, table: str, row: str, column: str,
               reproduced: float | None = None, *, reproduced_std: float | None = None,
               tolerance: Tolerance | None = None, our_protocol: str = "",
               stand_in: str = "", not_checkable: str | None = None) -> dict:
        """Record one reproduced value and compute its verdict.

        Parameters
        ----------
        paper, table, row, column : str
            The claim's key in the registry.
        reproduced : float, optional
            Our value, in the claim's unit (see :attr:`unit`); ``None`` if none.
        reproduced_std : float, optional, keyword-only
            Spread over seeds/repeats, if any.
        tolerance : Tolerance, optional, keyword-only
            Default :data:`DEFAULT_TOLERANCE` for the claim's unit.
        our_protocol : str, keyword-only
            What we ran (split file, K, metric convention).
        stand_in : str, keyword-only
            Stand-in dataset/backbone used, if any.
        not_checkable : str, optional, keyword-only
            Reason the claim cannot be checked here; forces that verdict. A
            stand-in without this reason is judged like any other value.

        Returns
        -------
        dict
            The row as written to ``claims.csv``.
        """
        claim = get_claim(self.claims, paper, table, row, column)
        unit = claim["unit"]
        tol = tolerance or DEFAULT_TOLERANCE.get(unit, Tolerance(relative=0.05))
        value = _num(reproduced)
        if not_checkable:
            verdict, reason = "not checkable", not_checkable
        elif reproduced is None or math.isnan(value):
            raise ValueError(f"no reproduced value for {paper}/{table}/{row}/{column}: pass a "
                             "number, or not_checkable='<reason>'")
        else:
            ok = tol.allows(float(claim["value"]), value)
            verdict, reason = ("reproduced" if ok else "not reproduced"), ""
        entry = {
            "paper": paper, "table": table, "row": row, "column": column, "unit": unit,
            "claimed": float(claim["value"]), "claimed_std": claim["std"],
            "reproduced": value, "reproduced_std": _num(reproduced_std),
            "difference": value - float(claim["value"]), "tolerance": tol.describe(),
            "verdict": verdict, "our_protocol": our_protocol, "stand_in": stand_in,
            "reason": reason, "notebook": self.notebook,
        }
        self._rows[(paper, table, row, column)] = entry
        return entry

    def unit(self, paper: str, table: str, row: str, column: str) -> str:
        """Return the unit a claim is stated in (``"%"``, ``"fraction"``, ...)."""
        return get_claim(self.claims, paper, table, row, column)["unit"]

    def frame(self) -> pd.DataFrame:
        """Return the recorded rows as a DataFrame with :data:`RESULT_COLUMNS`."""
        return pd.DataFrame(list(self._rows.values()), columns=RESULT_COLUMNS)

    def write(self, path: str | os.PathLike | None = None) -> Path:
        """Write ``results/<nn>/claims.csv`` atomically and return its path."""
        path = Path(path) if path is not None else paths.results_dir(self.notebook) / "claims.csv"
        return save_table(self.frame(), path)


def summarize(*, results: str | os.PathLike | None = None,
              claims: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gather every ``results/<nn>/claims.csv`` into one table (run by ``cbirlib.run``).

    Registry claims that no notebook has recorded yet appear with verdict
    ``pending``. Returns ``(all_rows, counts)`` where ``counts`` has one row per
    paper and a column per verdict. Both are also written to
    ``results/claims_summary.csv`` and ``results/claims_counts.csv``.
    """
    results = Path(results) if results is not None else paths.results_dir()
    claims = load_claims() if claims is None else claims
    frames = [pd.read_csv(p, dtype={"notebook": str}, keep_default_na=False)
              for p in sorted(results.glob("[0-9][0-9]/claims.csv"))]
    done = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    recorded = set(map(tuple, done[_KEY].astype(str).to_numpy())) if len(done) else set()
    pending = claims.loc[[tuple(k) not in recorded for k in claims[_KEY].to_numpy()]]
    pending = pd.DataFrame({
        "paper": pending["paper"], "table": pending["table"], "row": pending["row"],
        "column": pending["column"], "unit": pending["unit"], "claimed": pending["value"],
        "claimed_std": pending["std"], "verdict": "pending",
        "reason": "no notebook has addressed this claim yet"})
    summary = pd.concat([done, pending], ignore_index=True)[RESULT_COLUMNS]
    counts = (pd.crosstab(summary["paper"], summary["verdict"])
              .reindex(columns=[*VERDICTS, "pending"], fill_value=0))
    counts.columns.name = None
    save_table(summary, results / "claims_summary.csv")
    save_table(counts, results / "claims_counts.csv", index=True)
    return summary, counts

"""Shared test setup.

If ``CBIR_DATA_MIRROR`` is unset and ``../shared/data`` exists beside the
checkout, point the mirror at it (the Makefile does the same), so data tests run
with the archives when they are there and skip with a reason when they are not.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_shared = ROOT.parent / "shared" / "data"
if not os.environ.get("CBIR_DATA_MIRROR") and (_shared / "SHA256SUMS").is_file():
    os.environ["CBIR_DATA_MIRROR"] = str(_shared)
os.environ.setdefault("MPLBACKEND", "agg")
# OpenMP threads that spin-wait slow torch down badly when other processes share
# the two cores (seen 25 s -> 117 s for the backbone tests); sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

"""Shared test setup.

If ``CBIR_DATA_MIRROR`` is unset and ``../shared/data`` exists beside the
checkout, point the mirror at it (the Makefile does the same), so data tests run
with the archives when they are there and skip with a reason when they are not.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_shared = ROOT.parent / "shared" / "data"
if not os.environ.get("CBIR_DATA_MIRROR") and (_shared / "SHA256SUMS").is_file():
    os.environ["CBIR_DATA_MIRROR"] = str(_shared)
os.environ.setdefault("MPLBACKEND", "agg")
# OpenMP threads that spin-wait slow torch down badly when other processes share
# the two cores (seen 25 s -> 117 s for the backbone tests); sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread, restoring the setting afterwards.

    The tensors in the model tests are small: one thread is nearly as fast as two
    on an idle 2-core machine and immune to OpenMP's spin-waiting when other
    processes share the cores (two threads made test_backbones 4x slower at load 6).
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

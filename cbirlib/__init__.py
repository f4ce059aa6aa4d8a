"""cbirlib: helpers for the CBIR replication compendium.

Every notebook in ``notebooks/`` imports this package; all reusable logic lives
here and is tested in ``tests/``. Importing the package has no side effects: no
seeds are set, no data are fetched, no matplotlib backend is chosen.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

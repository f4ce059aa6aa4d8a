"""Image arrays for a split, feature indexes on disk, and a cache of both.

Notebook 02 loads the images of a split with :func:`load_images` (resized,
converted to one mode, cached as ``.npy`` by the split file's checksum and the
size), encodes them, and writes the paper-001-style feature index with
:func:`write_feature_index`: a JSON list of ``{"file", "feature", "label"}``
records (the paper's format) and the same table as Parquet for speed.
Notebooks 03 and 04 read those indexes back with :func:`read_feature_index`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths
from ._io import atomic_write, sha256_bytes

__all__ = ["load_images", "write_feature_index", "read_feature_index", "check_features"]


def _table_key(table: pd.DataFrame) -> str:
    return sha256_bytes("\n".join(table["path"].astype(str)).encode())[:16]


def load_images(dataset: str, table: pd.DataFrame, *, size: int, mode: str = "L",
                cache: bool = True, progress: bool = True) -> np.ndarray:
    """Load the images listed in a split table as one uint8 array.

    Every image is converted to ``mode`` (``"L"`` grey or ``"RGB"``) and resized
    to ``size x size`` (bilinear), so mixed sizes and modes in a dataset are
    handled; an unreadable file raises :class:`cbirlib.datasets.ImageReadError`
    naming it. Used by notebook 02.

    Parameters
    ----------
    dataset : str
        Split dataset name (``splits.image_file`` resolves its paths).
    table : DataFrame
        Rows with ``path`` (e.g. ``splits.role_frame(split, "train")``).
    size : int, keyword-only
    mode : {"L", "RGB"}, keyword-only
    cache : bool, keyword-only
        Keep the array in ``cache_dir("images")`` keyed by the paths, size, mode.

    Returns
    -------
    ndarray
        ``(n, size, size)`` for ``"L"``, ``(n, size, size, 3)`` for ``"RGB"``.
    """
    from tqdm.auto import tqdm

    from .datasets import load_image
    from .splits import image_file

    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    if len(table) == 0:
        raise ValueError(f"{dataset}: the table lists no images")
    key = f"{dataset}-{_table_key(table)}-{size}-{mode}"
    path = paths.cache_dir("images", create=False) / f"{key}.npy"
    if cache and path.is_file():
        return np.load(path)
    arrays = [load_image(image_file(dataset, p), mode=mode, size=(size, size))
              for p in tqdm(table["path"], desc=f"load {dataset}", disable=not progress,
                            mininterval=2)]
    images = np.stack(arrays).astype(np.uint8)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, mode="wb") as fh:
            np.save(fh, images)
    return images


def check_features(features: np.ndarray, *, what: str = "features") -> np.ndarray:
    """Return ``features`` as float32 2-D, or raise a clear error (NaN, inf, shape)."""
    features = np.asarray(features)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"{what}: expected a non-empty (n, d) array, got shape {features.shape}")
    if not np.isfinite(features).all():
        bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
        raise ValueError(f"{what}: {len(bad)} rows contain NaN or inf (first row {bad[0]}); "
                         "the features are unusable for Euclidean retrieval")
    return features.astype(np.float32, copy=False)


def write_feature_index(stem: str | os.PathLike, files, features: np.ndarray, labels) -> dict:
    """Write a feature index as ``<stem>.json`` (paper 001's format) and ``<stem>.parquet``.

    The JSON holds one record per image, ``{"file": ..., "feature": [...],
    "label": ...}``; the Parquet file holds columns ``file``, ``label`` and
    ``f0 .. f{d-1}``. Both are written atomically. Returns the two paths.
    """
    features = check_features(features)
    files, labels = list(map(str, files)), np.asarray(labels)
    if not (len(files) == len(features) == len(labels)):
        raise ValueError("files, features and labels must have the same length")
    stem = Path(stem)
    records = [{"file": f, "feature": [round(float(v), 6) for v in row], "label": int(l)}
               for f, row, l in zip(files, features, labels)]
    json_path, parquet_path = stem.with_suffix(".json"), stem.with_suffix(".parquet")
    with atomic_write(json_path) as fh:
        json.dump(records, fh)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
    frame.insert(0, "label", labels.astype(int))
    frame.insert(0, "file", files)
    with atomic_write(parquet_path, mode="wb") as fh:
        frame.to_parquet(fh, index=False)
    return {"json": json_path, "parquet": parquet_path}


def read_feature_index(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read a feature index (``.parquet`` or ``.json``): ``(files, features, labels)``."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        feats = frame[[c for c in frame.columns if c.startswith("f") and c[1:].isdigit()]]
        return frame["file"].tolist(), feats.to_numpy(np.float32), frame["label"].to_numpy()
    if path.suffix == ".json":
        records = json.loads(path.read_text())
        return ([r["file"] for r in records],
                np.asarray([r["feature"] for r in records], np.float32),
                np.asarray([r["label"] for r in records]))
    raise ValueError(f"{path}: a feature index is .parquet or .json")

"""Deep-hashing benchmarks that are not shipped here, read from their list files.

The survey's Tables II-IV (notebook 07) also report NUS-WIDE, MS-COCO,
ImageNet (the 100-class hashing subset) and MNIST. Their images cannot be
downloaded on this machine and are not in the data mirror, but users who have
them usually hold them in the layout the public deep-hashing code bases use
(e.g. DeepHash-pytorch, HashNet): a folder per benchmark with three list files

    <root>/<name>/train.txt      training images (the hash functions learn on them)
    <root>/<name>/test.txt       queries
    <root>/<name>/database.txt   the retrieval database

where each line is ``<image path> <label>`` (one integer class) or
``<image path> <0/1> <0/1> ...`` (a label-indicator vector, multi-label data).
Relative image paths are resolved against ``image_root`` (default: the
benchmark folder). :func:`load_hashing_lists` reads and validates such a
folder; the label matrices go straight into :mod:`cbirlib.metrics` (a query
and an item are relevant when they share a label) and :mod:`cbirlib.deephash`.

``<root>`` is :func:`cbirlib.paths.hashing_lists_dir` (``$CBIR_HASHING_LISTS`` if set,
else ``cache_dir("hashing_lists")``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .paths import hashing_lists_dir

__all__ = ["HASHING_BENCHMARKS", "HashingList", "load_hashing_lists",
           "available_hashing_benchmarks"]

#: Survey dataset name -> (folder name, number of labels, multi-label?).
HASHING_BENCHMARKS: dict[str, tuple[str, int, bool]] = {
    "NUS-WIDE": ("nus_wide", 21, True),
    "MS-COCO": ("ms_coco", 80, True),
    "ImageNet": ("imagenet100", 100, False),
    "MNIST": ("mnist", 10, False),
}

_ROLES = ("train", "test", "database")


@dataclass(frozen=True)
class HashingList:
    """One list file: image paths and their ``(n, n_labels)`` 0/1 label matrix."""

    paths: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def _layout(folder: Path) -> str:
    return (f"put train.txt, test.txt and database.txt in {folder} (one '<image path> <label>' "
            "or '<image path> <0/1 ...>' per line, the DeepHash-pytorch layout), or set "
            "CBIR_HASHING_LISTS to the folder that holds it")


def _read_list(path: Path, *, n_labels: int, image_root: Path, check_images: bool) -> HashingList:
    paths, rows = [], []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            values = parts[1:]
            try:
                numbers = [int(v) for v in values]
            except ValueError:
                raise ValueError(f"{path}, line {number}: labels must be integers, got "
                                 f"{' '.join(values)!r}") from None
            if len(numbers) == 1 and n_labels > 1:
                if not 0 <= numbers[0] < n_labels:
                    raise ValueError(f"{path}, line {number}: class {numbers[0]} outside "
                                     f"0..{n_labels - 1}")
                row = np.zeros(n_labels, np.int8)
                row[numbers[0]] = 1
            elif len(numbers) == n_labels and set(numbers) <= {0, 1}:
                row = np.asarray(numbers, np.int8)
            else:
                raise ValueError(f"{path}, line {number}: expected one class index or "
                                 f"{n_labels} 0/1 values after the image path, got "
                                 f"{len(numbers)} value(s)")
            image = Path(parts[0])
            image = image if image.is_absolute() else image_root / image
            if check_images and not image.is_file():
                raise FileNotFoundError(f"{path}, line {number}: image {image} does not exist; "
                                        "fix image_root or the list file")
            paths.append(str(image))
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: the list is empty")
    return HashingList(tuple(paths), np.stack(rows))


def load_hashing_lists(dataset: str, *, root: str | os.PathLike | None = None,
                       image_root: str | os.PathLike | None = None,
                       check_images: bool = True) -> dict[str, HashingList]:
    """Read a hashing benchmark's ``train`` / ``test`` / ``database`` lists (notebook 07).

    Parameters
    ----------
    dataset : str
        A key of :data:`HASHING_BENCHMARKS` (the survey's name, e.g. ``"NUS-WIDE"``).
    root : path, keyword-only
        Folder holding ``<folder name>/``; default :func:`cbirlib.paths.hashing_lists_dir`.
    image_root : path, keyword-only
        Base of relative image paths; default the benchmark folder.
    check_images : bool, keyword-only
        Raise if a listed image does not exist.

    Returns
    -------
    dict of str to HashingList
        Keys ``"train"``, ``"test"``, ``"database"``; labels are ``(n, n_labels)``
        int8 indicator matrices (single-label classes one-hot encoded).

    Raises
    ------
    FileNotFoundError
        If the folder or a list file is missing (the message gives the layout), or
        a listed image is missing with ``check_images``.
    ValueError
        A malformed line (file and line number named) or an empty list.
    """
    if dataset not in HASHING_BENCHMARKS:
        raise KeyError(f"unknown hashing benchmark {dataset!r}; known: {list(HASHING_BENCHMARKS)}")
    folder_name, n_labels, _ = HASHING_BENCHMARKS[dataset]
    folder = Path(root if root is not None else hashing_lists_dir()) / folder_name
    missing = [r for r in _ROLES if not (folder / f"{r}.txt").is_file()]
    if missing:
        raise FileNotFoundError(f"{dataset}: no {', '.join(m + '.txt' for m in missing)} in "
                                f"{folder}; {_layout(folder)}")
    base = Path(image_root) if image_root is not None else folder
    return {role: _read_list(folder / f"{role}.txt", n_labels=n_labels, image_root=base,
                             check_images=check_images) for role in _ROLES}


def available_hashing_benchmarks(*, root: str | os.PathLike | None = None) -> list[str]:
    """Survey dataset names whose three list files exist under ``root`` (notebook 07)."""
    base = Path(root if root is not None else hashing_lists_dir())
    return [name for name, (folder, _, _) in HASHING_BENCHMARKS.items()
            if all((base / folder / f"{r}.txt").is_file() for r in _ROLES)]

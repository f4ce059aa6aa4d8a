"""Image datasets: a registry, safe cached fetching, per-image indexes and image loading.

Every notebook gets its images through this module:

* 01 splits: :func:`load_index` of every dataset, to write the split files;
* 02 autoencoder: ``medical_mnist``, ``gallbladder``, ``cifar10``;
* 03 hashing: ``cifar10``;
* 04 index comparison: ``cifar10``, ``caltech101``;
* 05 inpainting: ``paris6k`` and :func:`paris6k_ground_truth`;
* 06 EfficientNet: ``corel1k``;
* 07 survey: ``cifar10``;
* the ``smoke`` profile and the tests: ``digits``, an embedded dataset built from
  scikit-learn, which needs no files at all.

The design follows scikit-image's ``skimage.data`` registry and d2l's ``DATA_HUB``:
a dataset is a name mapped to an archive and its SHA-256 (:data:`REGISTRY`). The
archive is unpacked once into the cache and reused from there.

Where a dataset comes from
--------------------------
:func:`fetch` tries, in order:

1. the cache, ``cache_dir("datasets")/<name>/`` (``$CBIR_CACHE``). An entry counts
   only if its ``.complete`` marker records the registry's SHA-256 (or, for a built
   dataset, the builder's id); anything else is treated as absent and replaced;
2. the local mirror ``$CBIR_DATA_MIRROR/<archive>``, verified against the registry
   SHA-256;
3. a download from ``$CBIR_DATA_URL/<archive>`` (a base URL serving the same
   archives), verified against the registry SHA-256;
4. a builder, if the dataset has one: ``digits`` is built from scikit-learn,
   ``cifar10`` from torchvision's canonical download (online users only).

A dataset found nowhere raises :class:`DatasetNotFoundError`; an archive whose
digest differs raises :class:`ChecksumError`. In both cases nothing is cached.

Unpacking is safe and atomic: every tar member is checked (no absolute paths, no
``..``, no links leading out, no device files, nothing outside the expected
folder) and tarfile's ``"data"`` filter is applied on top. Members are unpacked
into a temporary sibling folder that is renamed into place only once complete, so
a killed run never leaves a folder that counts as the cache.

Environment variables
---------------------
CBIR_CACHE
    Where datasets are unpacked (see :mod:`cbirlib.paths`).
CBIR_DATA_MIRROR
    A folder holding the ``.tar.xz`` archives (e.g. ``../shared/data``).
CBIR_DATA_URL
    A base URL serving the same archives as ``<base>/<archive>``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from cbirlib._io import atomic_write_text, sha256_file
from cbirlib.paths import cache_dir, data_dir, mirror_dir

__all__ = [
    "DatasetSpec",
    "REGISTRY",
    "INDEX_COLUMNS",
    "CIFAR10_CLASSES",
    "DatasetNotFoundError",
    "ChecksumError",
    "UnsafeArchiveError",
    "ImageReadError",
    "list_datasets",
    "get_spec",
    "register",
    "available",
    "fetch",
    "dataset_root",
    "load_index",
    "paris6k_ground_truth",
    "image_path",
    "load_image",
]

#: Columns every index starts with, in this order; dataset-specific columns follow.
INDEX_COLUMNS: tuple[str, ...] = ("path", "label", "class_name", "split", "group")

#: CIFAR-10's standard label order 0..9 (also its sorted order).
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

_MARKER = ".complete"
_TMP_PREFIX = ".tmp-"
_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20
_SPLITS = frozenset({"train", "test", "val"})
_IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


# --------------------------------------------------------------------------- errors


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is in no cache, no mirror and no download source.

    The message names the dataset, its archive, every place that was tried and the
    variables ``CBIR_CACHE``, ``CBIR_DATA_MIRROR`` and ``CBIR_DATA_URL``.
    """


class ChecksumError(ValueError):
    """An archive's SHA-256 differs from the registry's; nothing was cached.

    Attributes
    ----------
    file : str
        The archive's path or URL.
    expected, actual : str
        Hex SHA-256 digests.
    """

    def __init__(self, file: str, expected: str, actual: str) -> None:
        self.file, self.expected, self.actual = str(file), expected, actual
        super().__init__(
            f"checksum mismatch for {file}: expected sha256 {expected}, got {actual}. "
            "The file is corrupt, truncated or a different version; nothing was cached. "
            "Replace the file (or fix CBIR_DATA_MIRROR / CBIR_DATA_URL) and try again."
        )


class UnsafeArchiveError(ValueError):
    """An archive member would escape the target folder or is not a plain file/folder."""


class ImageReadError(OSError):
    """An image file is missing, truncated or not an image.

    Attributes
    ----------
    path : str
        The file that could not be read.
    """

    def __init__(self, path: str | os.PathLike, reason: object) -> None:
        self.path = os.fspath(path)
        super().__init__(f"cannot read image {self.path}: {reason}")


# --------------------------------------------------------------------------- walking


def _natural_key(text: str) -> tuple:
    """Sort key comparing digit runs numerically ("img2" < "img10"), locale-free."""
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok)
                 for tok in re.split(r"(\d+)", text))


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in _IMAGE_SUFFIXES


def _walk_images(folder: Path) -> list[str]:
    """Return the image files below ``folder`` as POSIX paths relative to it (hidden skipped)."""
    found: list[str] = []
    stack = [(folder, "")]
    while stack:
        here, prefix = stack.pop()
        with os.scandir(here) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = f"{prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), rel + "/"))
                elif entry.is_file(follow_symlinks=False) and _is_image(entry.name):
                    found.append(rel)
    return found


def _subdirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder)
                  if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))


def _frame(rows: list[tuple], extra: dict[str, list] | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    for key, values in (extra or {}).items():
        df[key] = values
    return df


def _class_rows(root: Path, base: str, classes: Sequence[str], labels: dict[str, int],
                split: str, group: Callable[[str], str] | None = None) -> list[tuple]:
    rows = []
    for cls in classes:
        prefix = f"{base}{cls}/"
        for rel in _walk_images(root / prefix):
            path = prefix + rel
            rows.append((path, labels[cls], cls, split, group(path) if group else ""))
    return rows


# --------------------------------------------------------------------------- parsers


def _parse_class_folders(root: Path) -> pd.DataFrame:
    """Generic layout: ``<class>/<file>`` or ``<split>/<class>/<file>``.

    The split level is recognised when every top-level folder is ``train``, ``test``
    or ``val``. Labels follow the sorted class names (code-point order, as
    ``sorted()`` and torchvision's ``ImageFolder``).
    """
    top = _subdirs(root)
    if top and set(top) <= _SPLITS:
        classes = sorted({c for s in top for c in _subdirs(root / s)})
        labels = {c: i for i, c in enumerate(classes)}
        rows = []
        for split in top:
            rows += _class_rows(root, f"{split}/", _subdirs(root / split), labels, split)
        return _frame(rows)
    labels = {c: i for i, c in enumerate(top)}
    return _frame(_class_rows(root, "", top, labels, ""))


def _parse_numbered_class_folders(root: Path) -> pd.DataFrame:
    """Layout ``<k>_<name>/<file>``: label ``k``, class name ``name`` (Corel-1K, digits)."""
    labels, names = {}, {}
    for folder in _subdirs(root):
        m = re.fullmatch(r"(\d+)_(.+)", folder)
        if m is None:
            raise ValueError(f"{root}: class folder {folder!r} is not of the form <k>_<name>")
        labels[folder], names[folder] = int(m.group(1)), m.group(2)
    if sorted(labels.values()) != list(range(len(labels))):
        raise ValueError(f"{root}: class numbers {sorted(labels.values())} are not 0..C-1")
    rows = [(p, lab, names[c], s, g)
            for p, lab, c, s, g in _class_rows(root, "", list(labels), labels, "")]
    return _frame(rows)


def _parse_cifar10(root: Path) -> pd.DataFrame:
    """``{train,test}/<class>/NNNN.{jpg,png}`` with CIFAR-10's standard label order."""
    labels = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    rows = []
    for split in ("train", "test"):
        classes = _subdirs(root / split)
        unknown = set(classes) - set(labels)
        if unknown:
            raise ValueError(f"{root / split}: unknown CIFAR-10 classes {sorted(unknown)}")
        rows += _class_rows(root, f"{split}/", classes, labels, split)
    return _frame(rows)


def _gallbladder_group(path: str) -> str:
    split, _cls, fname = path.split("/", 2)
    return f"{split}/{fname.split('_', 1)[0]}"


def _parse_gallbladder(root: Path) -> pd.DataFrame:
    """``{train,test}/{BA,nonBA}/<patient>_<k>.jpg``; group = ``<split>/<patient>``.

    BA = 0 and nonBA = 1, as in the source's ``label.csv``. Patient ids are
    numbered separately in the training and the external-validation cohort (174 ids
    occur in both), so the group is prefixed with the split to keep patients apart.
    """
    labels = {"BA": 0, "nonBA": 1}
    rows = []
    for split in ("train", "test"):
        rows += _class_rows(root, f"{split}/", _subdirs(root / split), labels, split,
                            group=_gallbladder_group)
    return _frame(rows)


def _caltech_split_files(root: Path) -> tuple[Path, Path] | None:
    candidates = [root]
    with contextlib.suppress(Exception):  # no repository root: only the dataset root
        candidates.append(data_dir() / "caltech101")
    for folder in candidates:
        train, test = folder / "train.txt", folder / "test.txt"
        if train.is_file() and test.is_file():
            return train, test
    return None


def _parse_caltech101(root: Path) -> pd.DataFrame:
    """``<category>/image_NNNN.jpg``, 102 folders incl. ``BACKGROUND_Google``.

    ``split`` comes from the source's ``train.txt``/``test.txt`` when they are found
    in the dataset root or in ``data/caltech101/``; otherwise it is ``""``.
    """
    df = _parse_class_folders(root)
    files = _caltech_split_files(root)
    if files is not None:
        split_of: dict[str, str] = {}
        for split, fname in zip(("train", "test"), files):
            for line in fname.read_text(encoding="utf-8").splitlines():
                line = line.strip().replace("\\", "/")
                if line:
                    split_of[line] = split
                    split_of[os.path.splitext(line)[0]] = split
        df["split"] = [split_of.get(p, split_of.get(os.path.splitext(p)[0], ""))
                       for p in df["path"]]
    return df


def _read_wnid_words(root: Path) -> tuple[list[str], dict[str, str]]:
    wnids = sorted(w.strip() for w in (root / "wnids.txt").read_text().split() if w.strip())
    words = {}
    for line in (root / "words_200.txt").read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            wnid, text = line.split("\t", 1)
            words[wnid.strip()] = text.strip()
    return wnids, words


def _parse_tiny_imagenet(root: Path, *, part: str, split: str) -> pd.DataFrame:
    """``<part>/<wnid>/*.JPEG``; label by sorted wnid; class name from ``words_200.txt``."""
    wnids, words = _read_wnid_words(root)
    labels = {w: i for i, w in enumerate(wnids)}
    classes = _subdirs(root / part)
    unknown = set(classes) - set(labels)
    if unknown:
        raise ValueError(f"{root / part}: wnids not in wnids.txt: {sorted(unknown)[:5]}")
    rows = _class_rows(root, f"{part}/", classes, labels, split)
    wnid_col = [r[2] for r in rows]
    rows = [(p, lab, words.get(c, c), s, g) for p, lab, c, s, g in rows]
    return _frame(rows, {"wnid": wnid_col})


_PARIS_IMAGES = "images_max512"
_PARIS_GT = "gt_paris_120310"


def _read_paris_gt(root: Path) -> dict[str, dict]:
    """Parse ``gt_paris_120310/<q>_{query,good,ok,junk}.txt`` into a dict per query."""
    gt = {}
    for qfile in sorted((root / _PARIS_GT).glob("*_query.txt")):
        query = qfile.name[: -len("_query.txt")]
        tokens = qfile.read_text().split()
        lists = {}
        for kind in ("good", "ok", "junk"):
            f = root / _PARIS_GT / f"{query}_{kind}.txt"
            lists[kind] = [t for t in f.read_text().split()] if f.is_file() else []
        gt[query] = {"image": tokens[0], "bbox": tuple(float(v) for v in tokens[1:5]), **lists}
    return gt


def _parse_paris6k(root: Path) -> pd.DataFrame:
    """``images_max512/<landmark>/<name>.jpg``; extra column ``query_of``.

    ``query_of`` lists (``;``-joined) the official queries whose query image is this
    image, ``""`` for most images.
    """
    classes = _subdirs(root / _PARIS_IMAGES)
    labels = {c: i for i, c in enumerate(classes)}
    df = _frame(_class_rows(root, f"{_PARIS_IMAGES}/", classes, labels, ""))
    queries_of: dict[str, list[str]] = {}
    if (root / _PARIS_GT).is_dir():
        for query, info in _read_paris_gt(root).items():
            queries_of.setdefault(info["image"], []).append(query)
    stems = [PurePosixPath(p).stem for p in df["path"]]
    df["query_of"] = [";".join(sorted(queries_of.get(s, []), key=_natural_key)) for s in stems]
    return df


# --------------------------------------------------------------------------- builders


def _write_source(path: Path, text: str) -> None:
    atomic_write_text(path, text.strip() + "\n")


_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGITS_UPSCALE = 4  # 8x8 -> 32x32, nearest neighbour


def _build_digits(dest: Path, *, progress: bool = False) -> None:
    """Materialise scikit-learn's digits as ``dest/digits/<d>_<name>/<i:04d>.png``.

    ``i`` is the row in ``sklearn.datasets.load_digits()``; grey levels 0..16 become
    ``round(v * 255 / 16)`` and each pixel is repeated 4x4 (nearest neighbour) to
    32x32 so that CNNs with a stride-32 trunk accept the images.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    pixels = pixels.repeat(_DIGITS_UPSCALE, axis=1).repeat(_DIGITS_UPSCALE, axis=2)
    root = dest / "digits"
    for i, (img, target) in enumerate(zip(pixels, digits.target)):
        folder = root / f"{int(target)}_{_DIGIT_NAMES[int(target)]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    _write_source(root / "SOURCE.md", f"""
# digits: scikit-learn's 8x8 handwritten digits as PNG files

Built by `cbirlib.datasets` from `sklearn.datasets.load_digits()` (a copy of the UCI
"Optical Recognition of Handwritten Digits" test set: 1,797 images, 10 classes).
`<d>_<name>/<i:04d>.png`: `i` is the row in `load_digits()`; grey levels 0..16 were
mapped to round(v * 255 / 16) and each pixel repeated {_DIGITS_UPSCALE}x{_DIGITS_UPSCALE}
(nearest neighbour) to {8 * _DIGITS_UPSCALE}x{8 * _DIGITS_UPSCALE}, mode L.
No archive and no checksum: the data ship inside scikit-learn (BSD-3-Clause).
""")


def _build_cifar10_torchvision(dest: Path, *, progress: bool = True, dataset_cls=None) -> None:
    """Download CIFAR-10 with torchvision and write ``dest/cifar10/{train,test}/<class>/NNNN.png``.

    torchvision checks the archive's MD5 itself. ``NNNN`` counts the images of each
    class in the order of the pickled batches. The PNGs are lossless, unlike the
    mirror's JPEG q75 re-encodes.
    """
    if dataset_cls is None:
        from torchvision.datasets import CIFAR10 as dataset_cls
    download = dest / ".download"
    root = dest / "cifar10"
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        for split, train in (("train", True), ("test", False)):
            ds = dataset_cls(root=str(download), train=train, download=True)
            if tuple(ds.classes) != CIFAR10_CLASSES:
                raise ValueError(f"unexpected CIFAR-10 classes from torchvision: {ds.classes}")
            counters = [0] * len(CIFAR10_CLASSES)
            data = np.asarray(ds.data, dtype=np.uint8)
            for img, target in _progress_iter(zip(data, ds.targets), total=len(data),
                                              desc=f"writing cifar10/{split}", enabled=progress):
                target = int(target)
                folder = root / split / CIFAR10_CLASSES[target]
                if counters[target] == 0:
                    folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(folder / f"{counters[target]:04d}.png")
                counters[target] += 1
    finally:
        socket.setdefaulttimeout(old_timeout)
    shutil.rmtree(download, ignore_errors=True)
    _write_source(root / "SOURCE.md", """
# CIFAR-10 from torchvision, as lossless PNG

Built by `cbirlib.datasets` from `torchvision.datasets.CIFAR10(download=True)` (the
canonical `cifar-10-python.tar.gz`, MD5-checked by torchvision). Layout
`{train,test}/<class>/NNNN.png`, NNNN counting each class's images in batch order.
Pixels are the original uint8 values; the compendium's mirror copy holds JPEG q75
re-encodes instead, so results differ slightly between the two sources.
""")


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from, how it unpacks, and how to index it.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"corel1k"``.
    archive : str or None
        Archive file name in the mirror / under ``$CBIR_DATA_URL``; ``None`` for a
        dataset made by ``builder`` only.
    sha256 : str or None
        Hex SHA-256 of the archive (``None`` when ``archive`` is ``None``).
    folder : str
        The folder the archive unpacks to; :func:`dataset_root` points at it.
    description : str
        One line saying what the data are.
    stands_in_for : str
        Which paper dataset this copy replaces, and how faithfully.
    licence : str
        Licence / terms-of-use note.
    source_url : str
        Canonical page or URL of the original data.
    parser : callable, optional
        ``parser(root) -> DataFrame`` with the :data:`INDEX_COLUMNS` first.
        Default: ``<class>/<file>`` or ``<split>/<class>/<file>``, labels by sorted
        class name.
    layout : str
        The expected layout, quoted in error messages.
    n_images, n_classes : int, optional
        Expected counts (documentation; the tests check them).
    notebooks : tuple of str
        Notebooks using the dataset.
    original_note : str
        Where the original lives if its format differs from the archive's.
    builder : callable, optional
        ``builder(dest, *, progress)`` that writes ``dest/<folder>/...`` when no
        archive can be found (scikit-learn digits, torchvision CIFAR-10).
    builder_id : str
        Recorded in the cache marker; change it to invalidate built caches.
    embedded : bool
        ``True`` if ``builder`` needs neither files nor network (``digits``).
    """

    name: str
    archive: str | None
    sha256: str | None
    folder: str
    description: str
    stands_in_for: str
    licence: str
    source_url: str
    parser: Callable[[Path], pd.DataFrame] = field(default=_parse_class_folders, repr=False,
                                                   compare=False)
    layout: str = ""
    n_images: int | None = None
    n_classes: int | None = None
    notebooks: tuple[str, ...] = ()
    original_note: str = ""
    builder: Callable[..., None] | None = field(default=None, repr=False, compare=False)
    builder_id: str = ""
    embedded: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ValueError(f"bad dataset name {self.name!r}")
        if (self.archive is None) != (self.sha256 is None):
            raise ValueError(f"{self.name}: give both archive and sha256, or neither")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lower-case hex digits")
        if self.archive is None and self.builder is None:
            raise ValueError(f"{self.name}: needs an archive or a builder")
        if self.builder is not None and not self.builder_id:
            raise ValueError(f"{self.name}: a builder needs a builder_id")
        folder = PurePosixPath(self.folder)
        if not self.folder or folder.is_absolute() or ".." in folder.parts:
            raise ValueError(f"{self.name}: folder must be a relative path without '..'")


_TINY_SOURCE = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
_TINY_NOTE = ("The original is the Stanford CS231n zip (train/<wnid>/images/*.JPEG, "
              "val/images + val_annotations.txt); this archive regroups val by wnid.")
_TINY_LICENCE = ("ImageNet terms of access: non-commercial research and education only; "
                 "cite Deng et al. 2009 and Le & Yang 2015.")

REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec(
        name="corel1k",
        archive="corel1k.tar.xz",
        sha256="6c39a291ac82365f9c4eebfe26f82a6f8e41aba1786ee76e662bf00e971065ee",
        folder="corel1k",
        parser=_parse_numbered_class_folders,
        layout="corel1k/<k>_<name>/<n>.jpg, class k = n // 100",
        description="Corel-1K / Wang (SIMPLIcity) database: 1,000 JPEGs, 10 classes x 100, "
                    "384x256 or 256x384.",
        stands_in_for="Corel-1K itself (the original Wang files, byte-identical).",
        licence="Corel stock photos, distributed by J. Z. Wang for non-commercial research "
                "only; cite Wang, Li & Wiederhold, TPAMI 2001.",
        source_url="http://wang.ist.psu.edu/docs/related/",
        original_note="The original is a flat folder image.orig/0.jpg..999.jpg; this archive "
                      "sorts the same files into <n // 100>_<name>/ folders.",
        n_images=1000, n_classes=10, notebooks=("01", "06"),
    ),
    DatasetSpec(
        name="cifar10",
        archive="cifar10.tar.xz",
        sha256="3d5f93f8469ce9c08d599b7bde963942b32fd14e9c8a8270ebf79db5450f44fd",
        folder="cifar10",
        parser=_parse_cifar10,
        layout="cifar10/{train,test}/<class>/NNNN.jpg (or .png when built by torchvision)",
        description="CIFAR-10, 60,000 32x32 images, 10 classes, original 50,000/10,000 "
                    "train/test split. The mirror's files are JPEG q75 re-encodes, so pixels "
                    "differ slightly from the canonical batches.",
        stands_in_for="CIFAR-10 (JPEG q75 re-encode from the mirror; lossless PNG when "
                      "built from torchvision's download).",
        licence="No formal licence; research use, cite Krizhevsky 2009.",
        source_url="https://www.cs.toronto.edu/~kriz/cifar.html",
        original_note="The original is the pickled cifar-10-python.tar.gz; fetch() converts "
                      "it through torchvision when online.",
        n_images=60000, n_classes=10, notebooks=("01", "02", "03", "04", "07"),
        builder=_build_cifar10_torchvision, builder_id="cifar10-torchvision-png-v1",
    ),
    DatasetSpec(
        name="medical_mnist",
        archive="medical_mnist_2000pc.tar.xz",
        sha256="1bf9ca2ab6a5a91346cc9c0f0d5a24245d824fe4ca9faf98efe24ab8e1d8a720",
        folder="medical_mnist_2000pc",
        layout="medical_mnist_2000pc/<modality>/NNNNNN.jpeg",
        description="Medical MNIST / MedNIST subset: 64x64 grey JPEGs, 6 modalities x 2,000 "
                    "(AbdomenCT, BreastMRI, CXR, ChestCT, Hand, HeadCT), pixel duplicates removed.",
        stands_in_for="The papers' private medical image sets (modality retrieval).",
        licence="MedNIST: CC BY-SA 4.0 (per MONAI).",
        source_url="https://www.kaggle.com/datasets/andrewmvd/medical-mnist",
        original_note="The original has ~58,954 images (MONAI's MedNIST.tar.gz has the same "
                      "<modality>/NNNNNN.jpeg layout); this archive keeps the first 2,000 "
                      "pixel-unique files per class in sorted order.",
        n_images=12000, n_classes=6, notebooks=("01", "02"),
    ),
    DatasetSpec(
        name="gallbladder",
        archive="gallbladder_ba_ultrasound.tar.xz",
        sha256="bfe1de76e669abafa1c3cabbdcc47cfcc80e62bcaa8c94984e5ab05e906db626",
        folder="gallbladder_ba_ultrasound",
        parser=_parse_gallbladder,
        layout="gallbladder_ba_ultrasound/{train,test}/{BA,nonBA}/<patient>_<k>.jpg",
        description="Sonographic gallbladder crops for biliary atresia (Zhou et al., Nat. "
                    "Commun. 2021): 4,546 60x60 grey images, BA (0) vs non-BA (1), "
                    "train = training cohort, test = external validation cohort.",
        stands_in_for="The papers' private gallbladder ultrasound set.",
        licence="MIT (source repository); cite Zhou et al. 2021.",
        source_url="https://github.com/youngyzzZ/Sonographic-Gallbladder-Images-for-BA-Diagnosis",
        original_note="The original is data/training_data/*.jpg and data/test_data/*.jpg with "
                      "label.csv (0 = BA); this archive sorts them into BA/ and nonBA/.",
        n_images=4546, n_classes=2, notebooks=("01", "02"),
    ),
    DatasetSpec(
        name="caltech101",
        archive="caltech101_max256_q75.tar.xz",
        sha256="b2c6acd79b8e4cde4d3aee1c02f73b52eeef19195c959439034b29d9fa944ee7",
        folder="caltech101_max256_q75",
        parser=_parse_caltech101,
        layout="caltech101_max256_q75/<category>/image_NNNN.jpg",
        description="Caltech-101 re-encoded to longest side <= 256 px, JPEG q75: 9,145 "
                    "images, 101 categories + BACKGROUND_Google.",
        stands_in_for="Caltech-101 (second-generation JPEG, downscaled).",
        licence="CC BY 4.0; cite Fei-Fei, Fergus & Perona 2004.",
        source_url="https://data.caltech.edu/records/mzrjq-6wc02",
        original_note="The original is 101_ObjectCategories.tar.gz (same <category>/image_NNNN.jpg "
                      "names, full size).",
        n_images=9145, n_classes=102, notebooks=("01", "04"),
    ),
    DatasetSpec(
        name="tiny_imagenet_val",
        archive="tiny_imagenet200_val.tar.xz",
        sha256="258dfb845589c2dbd6ac4d575e86cba7142a80831002549af9eb8cdec4d11378",
        folder="tiny_imagenet200",
        parser=functools.partial(_parse_tiny_imagenet, part="val", split="val"),
        layout="tiny_imagenet200/val/<wnid>/val_N.JPEG + wnids.txt, words_200.txt",
        description="Tiny ImageNet validation set: 10,000 64x64 images, 200 classes x 50.",
        stands_in_for="The papers' 'ImageNet subset (50 classes)': take 50 Tiny ImageNet classes.",
        licence=_TINY_LICENCE,
        source_url=_TINY_SOURCE,
        original_note=_TINY_NOTE,
        n_images=10000, n_classes=200, notebooks=("01",),
    ),
    DatasetSpec(
        name="tiny_imagenet_train",
        archive="tiny_imagenet200_train_first100.tar.xz",
        sha256="36b02d8d2425bd8765302d9ddca5536614ee9e292049ca88da4bb6683d2ba83b",
        folder="tiny_imagenet200",
        parser=functools.partial(_parse_tiny_imagenet, part="train_first100", split="train"),
        layout="tiny_imagenet200/train_first100/<wnid>/<wnid>_K.JPEG, K = 0..99",
        description="Tiny ImageNet training images 0..99 of each class: 20,000 64x64 images, "
                    "200 classes x 100.",
        stands_in_for="The papers' 'ImageNet subset (50 classes)': take 50 Tiny ImageNet classes.",
        licence=_TINY_LICENCE,
        source_url=_TINY_SOURCE,
        original_note=_TINY_NOTE,
        n_images=20000, n_classes=200, notebooks=("01",),
    ),
    DatasetSpec(
        name="paris6k",
        archive="paris6k_subset.tar.xz",
        sha256="cbfdfa9c96f63f46f263e2cc9bd87215ddeb061bbf9f2e2d8f3b2ac66184f5c9",
        folder="paris6k_subset",
        parser=_parse_paris6k,
        layout="paris6k_subset/images_max512/<landmark>/*.jpg + gt_paris_120310/ + labels.csv",
        description="250 real Paris6k images (5 landmarks x 50: defense, eiffel_tower, "
                    "invalides, louvre, moulinrouge), longest side 512, with the official "
                    "ground truth gt_paris_120310/.",
        stands_in_for="Paris6k (a 250-image, 5-landmark subset: the full 55-query mAP "
                      "protocol cannot be run).",
        licence="Flickr images distributed by Oxford VGG for research; cite Philbin et al. 2008.",
        source_url="https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/",
        original_note="The original is paris_1.tgz + paris_2.tgz (6,412 images in "
                      "paris/<landmark>/) and paris_120310.tgz (ground truth).",
        n_images=250, n_classes=5, notebooks=("01", "05"),
    ),
    DatasetSpec(
        name="digits",
        archive=None,
        sha256=None,
        folder="digits",
        parser=_parse_numbered_class_folders,
        layout="digits/<d>_<name>/<i:04d>.png, 32x32 grey",
        description="scikit-learn's handwritten digits: 1,797 images, 10 classes, upsampled "
                    "8x8 -> 32x32 (nearest); built from scikit-learn, no archive, no checksum.",
        stands_in_for="Nothing: the smoke profile's and the tests' offline dataset.",
        licence="BSD-3-Clause (scikit-learn); UCI optdigits.",
        source_url="https://scikit-learn.org/stable/modules/generated/"
                   "sklearn.datasets.load_digits.html",
        n_images=1797, n_classes=10, notebooks=("smoke profile",),
        builder=_build_digits, builder_id=f"sklearn-digits-x{_DIGITS_UPSCALE}-png-v1",
        embedded=True,
    ),
)}


def list_datasets() -> list[str]:
    """Return the registered dataset names, sorted.

    Used by notebook 01 (splits) to walk every dataset.
    """
    return sorted(REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    """Return the :class:`DatasetSpec` registered as ``name``.

    Notebooks 02-07 print its ``stands_in_for`` and ``licence`` next to their results.

    Raises
    ------
    KeyError
        For an unknown name; the message lists the known ones.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}") from None


class register:
    """Add a :class:`DatasetSpec` to :data:`REGISTRY`; as a context manager, temporarily.

    ``register(spec)`` registers for good; ``with register(spec): ...`` restores the
    previous entry (or its absence) on exit. Used by the tests to register toy
    archives.

    Parameters
    ----------
    spec : DatasetSpec
    replace : bool, keyword-only
        Allow replacing an existing entry of the same name.
    """

    def __init__(self, spec: DatasetSpec, *, replace: bool = False) -> None:
        if not isinstance(spec, DatasetSpec):
            raise TypeError("register() takes a DatasetSpec")
        if spec.name in REGISTRY and not replace:
            raise ValueError(f"dataset {spec.name!r} is already registered (pass replace=True)")
        self.spec = spec
        self._previous = REGISTRY.get(spec.name)
        REGISTRY[spec.name] = spec

    def __enter__(self) -> DatasetSpec:
        return self.spec

    def __exit__(self, *exc) -> None:
        if self._previous is None:
            REGISTRY.pop(self.spec.name, None)
        else:
            REGISTRY[self.spec.name] = self._previous


# --------------------------------------------------------------------------- cache


def _datasets_cache() -> Path:
    return cache_dir("datasets")


def _entry(spec: DatasetSpec) -> Path:
    return _datasets_cache() / spec.name


def _read_marker(entry: Path) -> dict | None:
    try:
        marker = json.loads((entry / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _is_complete(spec: DatasetSpec, entry: Path) -> bool:
    marker = _read_marker(entry)
    if marker is None or marker.get("dataset") != spec.name:
        return False
    if marker.get("source") == "archive":
        ok = spec.sha256 is not None and marker.get("sha256") == spec.sha256
    elif marker.get("source") == "builder":
        ok = spec.builder is not None and marker.get("builder_id") == spec.builder_id
    else:
        ok = False
    return ok and (entry / spec.folder).is_dir()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _clean_stale(base: Path, name: str) -> None:
    """Remove temporary folders/files of ``name`` left by processes that no longer run."""
    prefix = f"{_TMP_PREFIX}{name}-"
    for leftover in base.glob(f"{prefix}*"):
        pid_text = leftover.name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            _remove(leftover)


def _install(spec: DatasetSpec, populate: Callable[[Path], None], marker: dict) -> Path:
    """Fill a temporary sibling folder with ``populate``, mark it complete, rename it in place."""
    base = _datasets_cache()
    _clean_stale(base, spec.name)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{spec.name}-{os.getpid()}-", dir=base))
    final = _entry(spec)
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is a normal folder
        populate(tmp)
        if not (tmp / spec.folder).is_dir():
            raise UnsafeArchiveError(
                f"{spec.name}: the source did not produce the expected folder {spec.folder!r} "
                f"(expected layout: {spec.layout or spec.folder + '/<class>/<image>'})")
        atomic_write_text(tmp / _MARKER, json.dumps({"dataset": spec.name, **marker},
                                                     indent=2, sort_keys=True) + "\n")
        if final.exists() or final.is_symlink():
            if _is_complete(spec, final):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return final / spec.folder
            _remove(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final / spec.folder


# --------------------------------------------------------------------------- progress


def _progress_bar(*, total: int | None, desc: str, enabled: bool, unit: str = "B"):
    from tqdm import tqdm

    scale = unit == "B"
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, unit_divisor=1024 if scale
                else 1000, disable=not enabled, leave=False)


def _progress_iter(iterable, *, total: int, desc: str, enabled: bool) -> Iterator:
    with _progress_bar(total=total, desc=desc, enabled=enabled, unit="img") as bar:
        for item in iterable:
            yield item
            bar.update(1)


class _CountingReader:
    """File wrapper that reports the bytes read to a progress bar."""

    def __init__(self, raw, bar) -> None:
        self._raw, self._bar = raw, bar

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._bar.update(len(data))
        return data


# --------------------------------------------------------------------------- extraction


def _check_member(member: tarfile.TarInfo, top: str, archive: str) -> bool:
    """Reject members that are absolute, climb with ``..``, leave ``top`` or are special.

    Returns ``False`` for a bare ``.`` folder entry (to be skipped), ``True`` otherwise.
    """
    name = member.name.replace("\\", "/")
    where = f"{archive}: member {member.name!r}"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"{where} has an absolute path")
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts:
        raise UnsafeArchiveError(f"{where} contains '..'")
    if not parts and member.isdir():
        return False
    if not parts or parts[0] != top:
        raise UnsafeArchiveError(f"{where} lies outside the expected folder {top!r}")
    if member.issym() or member.islnk():
        target = member.linkname.replace("\\", "/")
        if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
            raise UnsafeArchiveError(f"{where} links to the absolute path {member.linkname!r}")
        base = PurePosixPath(*parts).parent if member.issym() else PurePosixPath()
        resolved = os.path.normpath((base / target).as_posix())
        if resolved == ".." or resolved.startswith("../") or resolved.split("/")[0] != top:
            raise UnsafeArchiveError(f"{where} links outside {top!r} ({member.linkname!r})")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where} is a device, FIFO or other special file")
    return True


def _extract_member(tf: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tf.extract(member, dest, filter="data")
    else:  # Python without extraction filters: _check_member already vetted the member
        tf.extract(member, dest)


def _safe_extract(archive: Path, dest: Path, *, top: str, label: str, progress: bool) -> None:
    """Stream-extract ``archive`` into ``dest``, checking every member first."""
    filter_error = getattr(tarfile, "FilterError", ())
    with open(archive, "rb") as raw, _progress_bar(total=archive.stat().st_size,
                                                   desc=f"extracting {label}",
                                                   enabled=progress) as bar:
        try:
            with tarfile.open(fileobj=_CountingReader(raw, bar), mode="r|*") as tf:
                for member in tf:
                    if _check_member(member, top, label):
                        _extract_member(tf, member, dest)
        except filter_error as exc:  # type: ignore[misc]
            raise UnsafeArchiveError(f"{label}: {exc}") from exc
        except tarfile.TarError as exc:
            raise UnsafeArchiveError(f"{label}: not a readable tar archive: {exc}") from exc


def _install_archive(spec: DatasetSpec, archive: Path, *, origin: str, progress: bool) -> Path:
    top = PurePosixPath(spec.folder).parts[0]
    return _install(
        spec,
        lambda tmp: _safe_extract(archive, tmp, top=top, label=spec.archive, progress=progress),
        {"source": "archive", "archive": spec.archive, "sha256": spec.sha256, "origin": origin},
    )


# --------------------------------------------------------------------------- download


def _download(url: str, dest: Path, *, label: str, progress: bool) -> str:
    """Stream ``url`` into ``dest``; return the SHA-256 of what was written."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "cbirlib-datasets"})
    with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response, \
            open(dest, "wb") as fh:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with _progress_bar(total=total, desc=f"downloading {label}", enabled=progress) as bar:
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _fetch_url(spec: DatasetSpec, base: str, *, progress: bool) -> Path:
    url = f"{base.rstrip('/')}/{spec.archive}"
    fd, part = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{spec.name}-{os.getpid()}-",
                                suffix=".part", dir=_datasets_cache())
    os.close(fd)
    part_path = Path(part)
    try:
        actual = _download(url, part_path, label=spec.archive, progress=progress)
        if actual != spec.sha256:
            raise ChecksumError(url, spec.sha256, actual)
        return _install_archive(spec, part_path, origin=url, progress=progress)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part_path.unlink()


# --------------------------------------------------------------------------- public


def available(name: str) -> bool:
    """Tell whether ``name`` can be had without a download.

    True if the cache holds a completed copy, the mirror ``$CBIR_DATA_MIRROR`` holds
    its archive (not verified here), or the dataset is embedded (``digits``).
    Tests and notebooks use it to skip with a reason.

    Parameters
    ----------
    name : str
        A registered dataset name.

    Returns
    -------
    bool
    """
    spec = get_spec(name)
    if spec.embedded:
        return True
    if _is_complete(spec, cache_dir("datasets", create=False) / spec.name):
        return True
    mirror = mirror_dir()
    return bool(spec.archive and mirror is not None and (mirror / spec.archive).is_file())


def fetch(name: str, *, progress: bool = True) -> Path:
    """Make a dataset available locally and return its root folder.

    Sources, in order: the cache ``cache_dir("datasets")/<name>`` (``$CBIR_CACHE``,
    only if marked complete for the registry's SHA-256), the mirror
    ``$CBIR_DATA_MIRROR/<archive>``, a download of ``$CBIR_DATA_URL/<archive>``, and
    the dataset's builder if any. Archives are verified against the registry
    SHA-256, then unpacked safely and atomically.

    For ``cifar10`` the builder is torchvision's canonical download
    (``torchvision.datasets.CIFAR10(download=True)``, MD5-checked by torchvision),
    converted to ``cifar10/{train,test}/<class>/NNNN.png`` (lossless PNG). The
    mirror's files are JPEG q75 re-encodes, so pixels differ slightly between the
    two sources. ``digits`` is built from scikit-learn (no archive, no checksum).

    Used by every notebook, usually through :func:`load_index`.

    Parameters
    ----------
    name : str
        A registered dataset name (see :func:`list_datasets`).
    progress : bool, keyword-only
        Show tqdm progress bars for downloads and extraction.

    Returns
    -------
    pathlib.Path
        The unpacked dataset folder (``<cache>/datasets/<name>/<folder>``).

    Raises
    ------
    DatasetNotFoundError
        If no source has the dataset; the message says where to put it.
    ChecksumError
        If the mirror's or the downloaded archive's SHA-256 is wrong; nothing is cached.
    UnsafeArchiveError
        If the archive holds unsafe members; nothing is cached.
    """
    spec = get_spec(name)
    entry = _entry(spec)
    if _is_complete(spec, entry):
        return entry / spec.folder
    tried = [f"cache: {entry} holds no completed copy (CBIR_CACHE="
             f"{os.environ.get('CBIR_CACHE', '') or 'unset'})"]
    causes: list[BaseException] = []
    if spec.archive:
        mirror = mirror_dir()
        if mirror is None:
            tried.append("mirror: CBIR_DATA_MIRROR is unset")
        elif not (mirror / spec.archive).is_file():
            tried.append(f"mirror: CBIR_DATA_MIRROR={mirror} has no {spec.archive}")
        else:
            archive = mirror / spec.archive
            actual = sha256_file(archive)
            if actual != spec.sha256:
                raise ChecksumError(str(archive), spec.sha256, actual)
            return _install_archive(spec, archive, origin=str(archive), progress=progress)
        base = os.environ.get("CBIR_DATA_URL", "").strip()
        if not base:
            tried.append("download: CBIR_DATA_URL is unset")
        else:
            try:
                return _fetch_url(spec, base, progress=progress)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                if isinstance(exc, (ChecksumError, UnsafeArchiveError)):
                    raise
                causes.append(exc)
                tried.append(f"download: {base.rstrip('/')}/{spec.archive} failed: {exc}")
    if spec.builder is not None:
        marker = {"source": "builder", "builder_id": spec.builder_id, "sha256": None}
        if spec.embedded:  # needs no network: a failure is a bug, let it through
            return _install(spec, lambda tmp: spec.builder(tmp, progress=progress), marker)
        try:
            return _install(spec, lambda tmp: spec.builder(tmp, progress=progress), marker)
        except Exception as exc:  # noqa: BLE001 - reported below, with the cause chained
            causes.append(exc)
            tried.append(f"builder {spec.builder_id}: failed: {type(exc).__name__}: {exc}")
    lines = [f"dataset {spec.name!r} is not available"
             + (f": archive {spec.archive!r} was found nowhere." if spec.archive else ".")]
    lines += [f"  - {t}" for t in tried]
    if spec.archive:
        lines.append(
            f"Fix: set CBIR_DATA_MIRROR to a folder holding {spec.archive} "
            f"(sha256 {spec.sha256}), or CBIR_DATA_URL to a base URL serving "
            f"<base>/{spec.archive}, or CBIR_CACHE to a cache that already holds it.")
    lines.append(f"Original data: {spec.source_url}." + (f" {spec.original_note}"
                                                         if spec.original_note else ""))
    if spec.layout:
        lines.append(f"Expected layout: {spec.layout}.")
    error = DatasetNotFoundError("\n".join(lines))
    raise error from (causes[-1] if causes else None)


def dataset_root(name: str, *, progress: bool = True) -> Path:
    """Return the unpacked folder of ``name``, fetching it if needed.

    Image paths in :func:`load_index` are relative to this folder. Used by every
    notebook that opens images.

    Parameters
    ----------
    name : str
        A registered dataset name.
    progress : bool, keyword-only
        Show progress bars if a fetch is needed.

    Returns
    -------
    pathlib.Path
    """
    return fetch(name, progress=progress)


def load_index(name: str, *, progress: bool = True) -> pd.DataFrame:
    """Return one row per image of ``name``, fetching the dataset if needed.

    Used by notebook 01 (splits) for every dataset, and by notebooks 02-07 for
    theirs.

    Parameters
    ----------
    name : str
        A registered dataset name.
    progress : bool, keyword-only
        Show progress bars if a fetch is needed.

    Returns
    -------
    pandas.DataFrame
        Rows sorted by ``path`` in natural order (digit runs compared as numbers),
        index ``0..n-1``. Columns, in order:

        ``path``
            POSIX path relative to :func:`dataset_root`.
        ``label``
            int, ``0..C-1``: by sorted class name, except the natural orders of
            Corel-1K / digits (``k`` of ``<k>_<name>``), CIFAR-10 (standard order)
            and gallbladder (BA = 0, nonBA = 1, as in the source).
        ``class_name``
            Class folder name; Corel-1K/digits without the ``k_`` prefix; Tiny
            ImageNet the WordNet words from ``words_200.txt``.
        ``split``
            The source's split (``"train"``, ``"test"``, ``"val"``) or ``""``.
        ``group``
            Gallbladder: ``"<split>/<patient id>"`` (the two cohorts number patients
            independently); ``""`` otherwise.

        Extra columns: ``wnid`` (Tiny ImageNet), ``query_of`` (Paris6k: the
        official queries whose query image this is, ``;``-joined).
    """
    spec = get_spec(name)
    root = fetch(name, progress=progress)
    df = spec.parser(root)
    missing = [c for c in INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: parser returned no column(s) {missing}")
    if df["path"].duplicated().any():
        raise ValueError(f"{name}: duplicate paths in the index")
    keys = [_natural_key(p) for p in df["path"]]
    order = sorted(range(len(df)), key=keys.__getitem__)
    df = df.iloc[order].reset_index(drop=True)
    df = df[list(INDEX_COLUMNS) + [c for c in df.columns if c not in INDEX_COLUMNS]]
    df["label"] = df["label"].astype("int64")
    for col in ("path", "class_name", "split", "group"):
        df[col] = df[col].astype(str)
    return df


def paris6k_ground_truth(*, require_query_image: bool = True,
                         progress: bool = True) -> pd.DataFrame:
    """Return the official Paris6k queries, restricted to the 250 staged images.

    The ground truth ``gt_paris_120310/`` covers 11 landmarks x 5 queries; only 5
    landmarks' images are staged. Every good/ok/junk list is cut down to the images
    that exist. Used by notebook 05 (inpainting).

    Parameters
    ----------
    require_query_image : bool, keyword-only
        Keep only queries whose query image is staged (the default; 12 queries).
        With ``False``, keep every query with at least one good/ok image staged,
        ``path`` being ``""`` where the query image is missing.
    progress : bool, keyword-only
        Show progress bars if a fetch is needed.

    Returns
    -------
    pandas.DataFrame
        One row per query, sorted by name: ``query`` (e.g. ``"louvre_1"``),
        ``landmark`` (the gt's name, e.g. ``"eiffel"``, ``"triomphe"``),
        ``query_image`` (file stem), ``path`` (relative to the dataset root),
        ``bbox`` (x1, y1, x2, y2 in original-resolution pixels), ``bbox_staged``
        (the same box in the staged image's pixels, from ``labels.csv``; ``None``
        without a query image), and ``good``, ``ok``, ``junk``: frozensets of
        relative paths. The usual protocol counts good and ok as positives and
        ignores junk.
    """
    root = fetch("paris6k", progress=progress)
    index = load_index("paris6k", progress=progress)
    by_stem = {PurePosixPath(p).stem: p for p in index["path"]}
    sizes: dict[str, tuple[float, float]] = {}
    labels_csv = root / "labels.csv"
    if labels_csv.is_file():
        lab = pd.read_csv(labels_csv)
        for row in lab.itertuples(index=False):
            sizes[str(row.path)] = (row.staged_width / row.orig_width,
                                    row.staged_height / row.orig_height)
    rows = []
    for query, info in sorted(_read_paris_gt(root).items(), key=lambda kv: _natural_key(kv[0])):
        lists = {k: frozenset(by_stem[s] for s in info[k] if s in by_stem)
                 for k in ("good", "ok", "junk")}
        path = by_stem.get(info["image"], "")
        if require_query_image and not path:
            continue
        if not path and not (lists["good"] or lists["ok"]):
            continue
        staged = None
        if path:
            sx, sy = sizes.get(path) or _image_scale(root / path)
            x1, y1, x2, y2 = info["bbox"]
            staged = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        rows.append({"query": query, "landmark": query.rsplit("_", 1)[0],
                     "query_image": info["image"], "path": path, "bbox": info["bbox"],
                     "bbox_staged": staged, **lists})
    return pd.DataFrame(rows, columns=["query", "landmark", "query_image", "path", "bbox",
                                       "bbox_staged", "good", "ok", "junk"])


def _image_scale(path: Path) -> tuple[float, float]:
    """Fallback without labels.csv: assume the original's longer side was 1024."""
    with Image.open(path) as im:
        w, h = im.size
    s = max(w, h) / 1024.0
    return s, s


def image_path(name: str, rel_path: str, *, progress: bool = True) -> Path:
    """Return the absolute path of ``rel_path`` (an index ``path``) in dataset ``name``.

    Used by notebooks 02-07 to open the images of an index.

    Raises
    ------
    ValueError
        If ``rel_path`` is absolute or leaves the dataset folder.
    """
    rel = PurePosixPath(str(rel_path).replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{rel_path!r} must be a path relative to the dataset root")
    return dataset_root(name, progress=progress) / rel


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


def load_image(path: str | os.PathLike, *, mode: str | None = "RGB",
               size: int | tuple[int, int] | None = None,
               resample: str = "bilinear") -> np.ndarray:
    """Read an image file into a ``uint8`` array with Pillow.

    Used by notebooks 02-07 and by the feature extractors.

    Parameters
    ----------
    path : path-like
        The image file (see :func:`image_path`).
    mode : str or None, keyword-only
        Pillow mode to convert to: ``"RGB"`` (H, W, 3), ``"L"`` (H, W), ...;
        ``None`` keeps the file's mode.
    size : int or (width, height), keyword-only
        Resize to this size (an int means a square); ``None`` keeps the size.
    resample : {"bilinear", "nearest", "bicubic", "lanczos", "box"}, keyword-only
        Resampling filter used by ``size``.

    Returns
    -------
    numpy.ndarray
        ``uint8``, shape (H, W) or (H, W, C).

    Raises
    ------
    ImageReadError
        If the file is missing, truncated or not an image; the message names it.
    """
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}")
    if size is not None:
        size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"size must be a positive int or (width, height), got {size}")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "1" and mode is None:
                im = im.convert("L")
            if mode is not None and im.mode != mode:
                im = im.convert(mode)
            if size is not None and im.size != size:
                im = im.resize(size, _RESAMPLE[resample])
            arr = np.array(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(path, exc) from exc
    if arr.dtype != np.uint8:
        raise ImageReadError(path, f"mode {mode or 'of the file'} gives {arr.dtype}, "
                                   "not uint8; pass mode='RGB' or 'L'")
    return arr


def _main(argv: list[str] | None = None) -> int:
    """``python -m cbirlib.datasets --list | --fetch NAME [NAME ...] | --fetch-all``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m cbirlib.datasets",
                                     description="List or fetch the registered datasets.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--list", action="store_true", help="show the registry")
    group.add_argument("--fetch", nargs="+", metavar="NAME", help="fetch these datasets")
    group.add_argument("--fetch-all", action="store_true", help="fetch every dataset")
    args = parser.parse_args(argv)
    if args.list:
        for name in list_datasets():
            spec = REGISTRY[name]
            state = "cached or mirrored" if available(name) else "not available here"
            print(f"{name:22s} {spec.archive or '(embedded)':42s} {state}")
        return 0
    names = list_datasets() if args.fetch_all else args.fetch
    try:
        for name in names:
            print(f"{name}: {fetch(name)}", flush=True)
    except (DatasetNotFoundError, ChecksumError, UnsafeArchiveError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

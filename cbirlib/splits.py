"""Split protocols, versioned split files and leakage checks (notebook 01).

A *split file* is a CSV under :func:`cbirlib.paths.splits_dir` named
``<dataset>__<protocol>.csv`` with one row per (image, role) and the columns
:data:`SPLIT_COLUMNS`. An image can hold several roles (in the ``cifar10-1``
hashing protocol the 5,000 training images are also database images), so the
file is in long form: filter with :func:`role_frame`. Rows are sorted by role
(in the protocol's order) and then by path, values are written with fixed
formatting, and the random draws come from ``numpy.random.default_rng(seed)``,
so the same seed regenerates every file byte for byte.

``MANIFEST.json`` beside the split files records, per file, its SHA-256, row
counts per role, the protocol, the seed and the format version;
:func:`load_split` refuses a file whose checksum no longer matches.

Notebook 01 writes the files; notebooks 02-07 read them with :func:`load_split`.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import paths
from ._io import atomic_write, atomic_write_text, sha256_bytes, sha256_file

__all__ = [
    "SPLIT_COLUMNS",
    "SPLIT_FORMAT_VERSION",
    "Protocol",
    "PROTOCOLS",
    "LeakageError",
    "SplitChecksumError",
    "protocols_for",
    "make_split",
    "stratified_fractions",
    "grouped_fractions",
    "check_leakage",
    "leakage_report",
    "COMPOSITE_DATASETS",
    "split_datasets",
    "dataset_index",
    "image_file",
    "archive_sha256",
    "write_protocol_splits",
    "regenerates_identically",
    "role_frame",
    "subsample",
    "role_counts",
    "write_split",
    "load_split",
    "split_path",
    "read_manifest",
]

#: Columns of every split file, in order.
SPLIT_COLUMNS = ["path", "label", "class_name", "group", "role"]

#: Bumped whenever the file format or a protocol's sampling changes.
SPLIT_FORMAT_VERSION = 1

_MANIFEST = "MANIFEST.json"


class LeakageError(AssertionError):
    """A split violates its protocol (an image or a patient on both sides)."""


class SplitChecksumError(RuntimeError):
    """A split file no longer matches the checksum in ``MANIFEST.json``."""


@dataclass(frozen=True)
class Protocol:
    """One way of splitting one dataset.

    Attributes
    ----------
    name : str
        Protocol name, unique per dataset (e.g. ``"cifar10-1"``).
    dataset : str
        Registry name in :mod:`cbirlib.datasets`.
    roles : tuple of str
        Roles in the order rows are written.
    builder : callable
        ``builder(index, rng) -> DataFrame`` with :data:`SPLIT_COLUMNS`.
    disjoint : tuple of (str, str)
        Role pairs that must share no image (checked by :func:`check_leakage`).
    group_disjoint : tuple of (str, str)
        Role pairs that must share no ``group`` (patient).
    subset_of : tuple of (str, str)
        ``(a, b)``: every image of role ``a`` must also hold role ``b``.
    description : str
        The protocol in words, with the paper it comes from.
    seeded : bool
        Whether the split depends on the seed.
    repeated : bool
        Whether the protocol is run for several seeds (the seed is then part of
        the file name, e.g. Corel-1K 80/20 for three seeds).
    expected_counts : dict
        Images per role the protocol prescribes, checked by :func:`check_leakage`.
    """

    name: str
    dataset: str
    roles: tuple[str, ...]
    builder: Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]
    disjoint: tuple[tuple[str, str], ...] = ()
    group_disjoint: tuple[tuple[str, str], ...] = ()
    subset_of: tuple[tuple[str, str], ...] = ()
    description: str = ""
    seeded: bool = True
    repeated: bool = False
    expected_counts: dict = field(default_factory=dict)

    def file_stem(self, seed: int) -> str:
        """Return ``<dataset>__<protocol>``, plus ``__seed<k>`` for repeated protocols."""
        stem = f"{self.dataset}__{self.name}"
        return f"{stem}__seed{seed}" if self.repeated else stem


# ----------------------------------------------------------------------------- helpers


def _largest_remainder(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Integer sizes summing to ``n``, closest to ``n * fractions`` (Hamilton's method)."""
    raw = np.asarray(fractions, dtype=float) * n
    sizes = np.floor(raw).astype(int)
    short = n - int(sizes.sum())
    order = np.argsort(-(raw - sizes), kind="stable")
    sizes[order[:short]] += 1
    return sizes.tolist()


def _rows(index: pd.DataFrame, positions, role: str) -> pd.DataFrame:
    sub = index.iloc[np.sort(np.asarray(positions, dtype=int))]
    out = sub[["path", "label", "class_name", "group"]].copy()
    out["role"] = role
    return out


def _check_fractions(fractions: tuple[float, ...]) -> None:
    if len(fractions) < 2 or any(f <= 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be >= 2 positive numbers summing to 1, got {fractions}")


def stratified_fractions(index: pd.DataFrame, rng: np.random.Generator, *,
                         fractions: tuple[float, ...], roles: tuple[str, ...],
                         pool: np.ndarray | None = None) -> pd.DataFrame:
    """Split ``index`` per class into ``roles`` with the given ``fractions``.

    Within each class (in label order) the images are permuted with ``rng`` and
    cut with largest-remainder rounding, so every role gets its share of every
    class. Used by notebook 01 for Corel-1K, Medical MNIST and Tiny ImageNet.

    Parameters
    ----------
    index : DataFrame
        Dataset index with ``path``, ``label``, ``class_name``, ``group``.
    rng : numpy.random.Generator
        Source of the permutation.
    fractions, roles : tuple, keyword-only
        One fraction per role, summing to 1.
    pool : ndarray of int, optional, keyword-only
        Positions of ``index`` to split (default: all).
    """
    _check_fractions(fractions)
    if len(fractions) != len(roles):
        raise ValueError("one fraction per role is needed")
    pool = np.arange(len(index)) if pool is None else np.asarray(pool)
    labels = index["label"].to_numpy()[pool]
    parts: list[list[int]] = [[] for _ in roles]
    for label in np.unique(labels):
        members = pool[labels == label]
        members = members[rng.permutation(len(members))]
        start = 0
        for r, size in enumerate(_largest_remainder(len(members), fractions)):
            parts[r].extend(members[start:start + size].tolist())
            start += size
    return pd.concat([_rows(index, p, role) for p, role in zip(parts, roles)], ignore_index=True)


def grouped_fractions(index: pd.DataFrame, rng: np.random.Generator, *,
                      fractions: tuple[float, ...], roles: tuple[str, ...]) -> pd.DataFrame:
    """Split by ``group`` (patient) so that no group spans two roles.

    Groups are stratified by their majority label: within each label the groups
    are permuted with ``rng`` and assigned greedily, each to the role whose
    image count is furthest below its target share. Image proportions are
    therefore close to, not exactly, ``fractions``; notebook 01 reports them.
    Used for the gallbladder set (stand-in for paper 000's medical set).
    """
    _check_fractions(fractions)
    if (index["group"].astype(str) == "").any():
        raise ValueError("grouped split needs a non-empty 'group' for every image")
    sizes = index.groupby("group", sort=True).size()
    majority = index.groupby("group", sort=True)["label"].agg(lambda s: s.value_counts().idxmax())
    parts: list[list[int]] = [[] for _ in roles]
    positions = index.groupby("group", sort=True).indices
    for label in sorted(majority.unique()):
        groups = majority.index[majority.to_numpy() == label].to_numpy()
        groups = groups[rng.permutation(len(groups))]
        total = int(sizes[groups].sum())
        filled = np.zeros(len(roles))
        targets = np.asarray(fractions) * total
        for g in groups:
            r = int(np.argmax(targets - filled))
            parts[r].extend(positions[g].tolist())
            filled[r] += sizes[g]
    return pd.concat([_rows(index, p, role) for p, role in zip(parts, roles)], ignore_index=True)


def _per_class_sample(index: pd.DataFrame, rng: np.random.Generator, pool: np.ndarray,
                      per_class: int) -> np.ndarray:
    labels = index["label"].to_numpy()[pool]
    chosen = []
    for label in np.unique(labels):
        members = pool[labels == label]
        if len(members) < per_class:
            raise ValueError(f"class {label} has {len(members)} images, {per_class} needed")
        chosen.append(members[rng.permutation(len(members))[:per_class]])
    return np.sort(np.concatenate(chosen))


def _orig(index: pd.DataFrame, split: str) -> np.ndarray:
    return np.flatnonzero(index["split"].to_numpy() == split)


# ---------------------------------------------------------------------------- builders


def _cifar_45_5_10(index, rng):
    train_val = stratified_fractions(index, rng, fractions=(0.9, 0.1), roles=("train", "val"),
                                     pool=_orig(index, "train"))
    return pd.concat([train_val, _rows(index, _orig(index, "test"), "test")], ignore_index=True)


def _cifar_hash(variant: str):
    def build(index, rng):
        everything = np.arange(len(index))
        if variant == "cifar10-2":
            query = _orig(index, "test")
            train = _orig(index, "train")
            return pd.concat([_rows(index, query, "query"), _rows(index, train, "train"),
                              _rows(index, train, "database")], ignore_index=True)
        query = _per_class_sample(index, rng, _orig(index, "test"), 100)
        rest = np.setdiff1d(everything, query)
        train = _per_class_sample(index, rng, rest, 500)
        database = np.setdiff1d(rest, train) if variant == "cifar10" else rest
        return pd.concat([_rows(index, query, "query"), _rows(index, train, "train"),
                          _rows(index, database, "database")], ignore_index=True)
    return build


def _stratified(fractions, roles):
    def build(index, rng):
        return stratified_fractions(index, rng, fractions=fractions, roles=roles)
    return build


def _grouped(fractions, roles):
    def build(index, rng):
        return grouped_fractions(index, rng, fractions=fractions, roles=roles)
    return build


def _tiny_50(index, rng):
    labels = np.sort(index["label"].unique())
    keep = np.sort(rng.choice(labels, size=50, replace=False))
    sub = index.loc[index["label"].isin(keep)].reset_index(drop=True)
    # labels re-numbered 0..49 in the subset, in the order of the original labels (wnids)
    sub["label"] = np.searchsorted(keep, sub["label"].to_numpy())
    return stratified_fractions(sub, rng, fractions=(0.8, 0.1, 0.1), roles=("train", "val", "test"))


_CALTECH_CLUTTER = "BACKGROUND_Google"


def _caltech(index, rng):
    objects = np.flatnonzero(index["class_name"].to_numpy() != _CALTECH_CLUTTER)
    clutter = np.flatnonzero(index["class_name"].to_numpy() == _CALTECH_CLUTTER)
    parts = stratified_fractions(index, rng, fractions=(0.1, 0.9), roles=("query", "database"),
                                 pool=objects)
    return pd.concat([parts, _rows(index, clutter, "database")], ignore_index=True)


def _paris(index, rng):
    if "query_of" not in index:
        raise ValueError("paris6k index needs a 'query_of' column (official queries)")
    is_query = index["query_of"].fillna("").astype(str).to_numpy() != ""
    return pd.concat([_rows(index, np.flatnonzero(is_query), "query"),
                      _rows(index, np.arange(len(index)), "database")], ignore_index=True)


_TVT = ("train", "val", "test")
_QTD = ("query", "train", "database")

#: Every protocol notebook 01 can write, keyed by ``<dataset>__<protocol>``.
PROTOCOLS: dict[str, Protocol] = {
    p.dataset + "__" + p.name: p
    for p in [
        Protocol("45k-5k-10k", "cifar10", _TVT, _cifar_45_5_10,
                 disjoint=(("train", "val"), ("train", "test"), ("val", "test")),
                 description="paper 000 Table 1: original train split 45,000 train / 5,000 val "
                             "(stratified), original 10,000 test images as test",
                 expected_counts={"train": 45000, "val": 5000, "test": 10000}),
        Protocol("cifar10", "cifar10", _QTD, _cifar_hash("cifar10"),
                 disjoint=(("query", "train"), ("query", "database"), ("train", "database")),
                 description="hashing protocol 'cifar10' (DeepHash-pytorch): 1,000 queries "
                             "(100/class) from test, 5,000 train (500/class), the other 54,000 "
                             "images as database",
                 expected_counts={"query": 1000, "train": 5000, "database": 54000}),
        Protocol("cifar10-1", "cifar10", _QTD, _cifar_hash("cifar10-1"),
                 disjoint=(("query", "train"), ("query", "database")),
                 subset_of=(("train", "database"),),
                 description="hashing protocol 'cifar10-1': 1,000 queries (100/class) from test, "
                             "the other 59,000 images as database, 5,000 train (500/class) "
                             "drawn from the database",
                 expected_counts={"query": 1000, "train": 5000, "database": 59000}),
        Protocol("cifar10-2", "cifar10", _QTD, _cifar_hash("cifar10-2"),
                 disjoint=(("query", "train"), ("query", "database")),
                 subset_of=(("train", "database"), ("database", "train")),
                 description="hashing protocol 'cifar10-2': the 10,000 test images as queries, "
                             "the 50,000 training images as train and database",
                 seeded=False,
                 expected_counts={"query": 10000, "train": 50000, "database": 50000}),
        Protocol("80-20", "corel1k", ("train", "test"), _stratified((0.8, 0.2), ("train", "test")),
                 disjoint=(("train", "test"),),
                 description="paper 003: 80/20 stratified train/test, repeated for three seeds; "
                             "test images query the training images",
                 repeated=True,
                 expected_counts={"train": 800, "test": 200}),
        Protocol("80-10-10", "medical_mnist", _TVT, _stratified((0.8, 0.1, 0.1), _TVT),
                 disjoint=(("train", "val"), ("train", "test"), ("val", "test")),
                 description="paper 001: 80/10/10 stratified train/val/test; test images query "
                             "the indexed training images",
                 expected_counts={"train": 9600, "val": 1200, "test": 1200}),
        Protocol("80-10-10-patient", "gallbladder", _TVT, _grouped((0.8, 0.1, 0.1), _TVT),
                 disjoint=(("train", "val"), ("train", "test"), ("val", "test")),
                 group_disjoint=(("train", "val"), ("train", "test"), ("val", "test")),
                 description="stand-in for paper 000's medical set: 80/10/10 by patient "
                             "(no patient on two sides), stratified by label"),
        Protocol("50class", "tiny_imagenet", _TVT, _tiny_50,
                 disjoint=(("train", "val"), ("train", "test"), ("val", "test")),
                 description="stand-in for paper 000's 'ImageNet (subset), 50 classes': 50 Tiny "
                             "ImageNet classes drawn with the seed from the 200, their 100 "
                             "training-part + 50 val images split 80/10/10 stratified",
                 expected_counts={"train": 6000, "val": 750, "test": 750}),
        Protocol("query-database", "caltech101", ("query", "database"), _caltech,
                 disjoint=(("query", "database"),),
                 description="paper 000 Table 4 (Caltech-101, protocol not stated there): 10% "
                             "of each of the 101 object categories as queries (stratified), "
                             "the rest and all 468 BACKGROUND_Google clutter images as database "
                             "(9,145 images in all; the paper counts 9,146)"),
        Protocol("official-queries", "paris6k", ("query", "database"), _paris,
                 subset_of=(("query", "database"),),
                 description="paper 002: the official Paris6k queries whose query image is in "
                             "the 5-landmark subset (12 of 55); every image is in the database "
                             "(the query image itself is excluded at ranking time, and relevance "
                             "comes from the official ground truth, not the folders)",
                 seeded=False),
        Protocol("80-10-10", "digits", _TVT, _stratified((0.8, 0.1, 0.1), _TVT),
                 disjoint=(("train", "val"), ("train", "test"), ("val", "test")),
                 description="smoke profile: scikit-learn digits, 80/10/10 stratified"),
        Protocol("query-database", "digits", ("query", "database"),
                 _stratified((0.1, 0.9), ("query", "database")),
                 disjoint=(("query", "database"),),
                 description="smoke profile: scikit-learn digits, 10% queries / 90% database"),
    ]
}


def protocols_for(dataset: str) -> list[Protocol]:
    """Return the protocols defined for a dataset registry name (notebook 01)."""
    found = [p for p in PROTOCOLS.values() if p.dataset == dataset]
    if not found:
        raise KeyError(f"no split protocol for dataset {dataset!r}; known: "
                       f"{sorted({p.dataset for p in PROTOCOLS.values()})}")
    return found


# ------------------------------------------------------------------------------- core


def make_split(protocol: Protocol | str, index: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Build a split table for ``protocol`` from a dataset index, and check it.

    Parameters
    ----------
    protocol : Protocol or str
        A :class:`Protocol` or its key ``"<dataset>__<name>"`` in :data:`PROTOCOLS`.
    index : DataFrame
        ``cbirlib.datasets.load_index(dataset)``.
    seed : int, keyword-only
        Seed of ``numpy.random.default_rng``; ignored by unseeded protocols.

    Returns
    -------
    DataFrame
        Columns :data:`SPLIT_COLUMNS`, sorted by role order then path.

    Raises
    ------
    LeakageError
        If the result violates the protocol (see :func:`check_leakage`).
    """
    if isinstance(protocol, str):
        protocol = PROTOCOLS[protocol]
    required = {"path", "label", "class_name", "group", "split"}
    missing = required - set(index.columns)
    if missing:
        raise ValueError(f"dataset index lacks columns {sorted(missing)}")
    index = index.sort_values("path", kind="stable").reset_index(drop=True)
    index["group"] = index["group"].fillna("").astype(str)
    rng = np.random.default_rng(seed)
    table = protocol.builder(index, rng)
    order = {r: i for i, r in enumerate(protocol.roles)}
    table = (table.assign(_o=table["role"].map(order))
             .sort_values(["_o", "path"], kind="stable").drop(columns="_o")
             .reset_index(drop=True))
    table["label"] = table["label"].astype(int)
    table = table[SPLIT_COLUMNS]
    check_leakage(table, protocol)
    return table


def leakage_report(table: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """List every rule of ``protocol`` checked on ``table`` and how many items break it.

    Rules: roles are the protocol's; no image twice in one role; ``disjoint``
    role pairs share no path; ``group_disjoint`` pairs share no non-empty group
    (patient); ``subset_of`` pairs hold; role sizes equal ``expected_counts``.
    Notebook 01 writes this table to ``results/01/leakage_checks.csv``.

    Returns
    -------
    DataFrame
        Columns ``check``, ``violations`` (int), ``example`` (str), ``passed`` (bool).
    """
    rows = []

    def add(check, bad, example=""):
        rows.append({"check": check, "violations": int(bad), "example": str(example),
                     "passed": bad == 0})

    roles = set(table["role"].unique())
    extra_roles = sorted(roles - set(protocol.roles))
    add("roles are " + "/".join(protocol.roles), len(extra_roles), ",".join(extra_roles))
    dup = table.duplicated(["path", "role"])
    add("no image twice in one role", int(dup.sum()),
        table.loc[dup, "path"].iloc[0] if dup.any() else "")
    by_role = {r: table.loc[table["role"] == r] for r in protocol.roles}
    for a, b in protocol.disjoint:
        both = sorted(set(by_role[a]["path"]) & set(by_role[b]["path"]))
        add(f"no image both {a} and {b}", len(both), both[0] if both else "")
    for a, b in protocol.group_disjoint:
        both = sorted((set(by_role[a]["group"]) & set(by_role[b]["group"])) - {""})
        add(f"no group (patient) on both the {a} and the {b} side", len(both),
            both[0] if both else "")
    for a, b in protocol.subset_of:
        extra = sorted(set(by_role[a]["path"]) - set(by_role[b]["path"]))
        add(f"every {a} image is also {b}", len(extra), extra[0] if extra else "")
    for role, count in protocol.expected_counts.items():
        n = len(by_role[role])
        add(f"{role} has {count} images", abs(n - count), f"found {n}" if n != count else "")
    return pd.DataFrame(rows, columns=["check", "violations", "example", "passed"])


def check_leakage(table: pd.DataFrame, protocol: Protocol) -> None:
    """Raise :class:`LeakageError` if ``table`` breaks a rule of ``protocol``.

    See :func:`leakage_report` for the rules; the message names the split, the
    rule, the number of offending items and one example.
    """
    report = leakage_report(table, protocol)
    failed = report.loc[~report["passed"]]
    if len(failed):
        name = f"{protocol.dataset}__{protocol.name}"
        raise LeakageError("; ".join(
            f"{name}: {r.check} failed ({r.violations} violations, e.g. {r.example})"
            for r in failed.itertuples()))


def role_frame(table: pd.DataFrame, role: str) -> pd.DataFrame:
    """Return the rows of one role, index reset (notebooks 02-07)."""
    if role not in set(table["role"]):
        raise KeyError(f"role {role!r} not in split (roles: {sorted(table['role'].unique())})")
    return table.loc[table["role"] == role].reset_index(drop=True)


def subsample(table: pd.DataFrame, n: int, *, seed: int) -> pd.DataFrame:
    """Return at most ``n`` rows, stratified by label, in the table's order (notebooks 02-07).

    ``n <= 0`` or ``n >= len(table)`` returns the table unchanged, so a profile
    can say "all" with 0. Per-class shares follow largest-remainder rounding, and
    the draw comes from ``numpy.random.default_rng(seed)``: quick profiles use
    it to cut sizes without changing the code path.
    """
    if n <= 0 or n >= len(table):
        return table.reset_index(drop=True)
    labels = table["label"].to_numpy()
    classes, counts = np.unique(labels, return_counts=True)
    quotas = _largest_remainder(int(n), tuple(counts / counts.sum()))
    rng = np.random.default_rng(seed)
    keep = []
    for label, quota in zip(classes, quotas):
        members = np.flatnonzero(labels == label)
        keep.append(members[rng.permutation(len(members))[:quota]])
    return table.iloc[np.sort(np.concatenate(keep))].reset_index(drop=True)


def role_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per-class image counts per role: rows = class, columns = roles, plus totals."""
    counts = pd.crosstab(table["class_name"], table["role"])
    roles = [r for r in dict.fromkeys(table["role"])]
    counts = counts[roles]
    counts.loc["total"] = counts.sum()
    counts.columns.name = None
    return counts


def split_path(dataset: str, protocol: str, *, seed: int | None = None,
               directory: str | os.PathLike | None = None) -> Path:
    """Return the path of a split file (see :func:`cbirlib.paths.splits_dir`)."""
    proto = PROTOCOLS[f"{dataset}__{protocol}"]
    directory = Path(directory) if directory is not None else paths.splits_dir()
    return directory / f"{proto.file_stem(0 if seed is None else seed)}.csv"


def _csv_bytes(table: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    table.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def read_manifest(directory: str | os.PathLike | None = None) -> dict:
    """Return ``MANIFEST.json`` of a splits folder as a dict (empty if absent)."""
    directory = Path(directory) if directory is not None else paths.splits_dir()
    path = directory / _MANIFEST
    if not path.is_file():
        return {"format_version": SPLIT_FORMAT_VERSION, "files": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SplitChecksumError(f"{path} is not valid JSON ({exc}); rerun notebook 01 to "
                                 "regenerate the split files and their manifest") from exc


def write_split(table: pd.DataFrame, protocol: Protocol | str, *, seed: int,
                directory: str | os.PathLike | None = None,
                dataset_sha256: str | None = None) -> Path:
    """Write a split file and update ``MANIFEST.json``, both atomically.

    Returns the path written. The manifest holds no timestamps, so it is
    byte-identical when the same seed is used again.
    """
    if isinstance(protocol, str):
        protocol = PROTOCOLS[protocol]
    directory = Path(directory) if directory is not None else paths.splits_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{protocol.file_stem(seed)}.csv"
    data = _csv_bytes(table[SPLIT_COLUMNS])
    with atomic_write(path, mode="wb") as fh:
        fh.write(data)
    manifest = read_manifest(directory)
    manifest["format_version"] = SPLIT_FORMAT_VERSION
    counts = table["role"].value_counts()
    manifest["files"][path.name] = {
        "dataset": protocol.dataset,
        "protocol": protocol.name,
        "seed": int(seed) if protocol.seeded else None,
        "sha256": sha256_bytes(data),
        "rows": int(len(table)),
        "roles": {r: int(counts.get(r, 0)) for r in protocol.roles},
        "description": protocol.description,
        "archive_sha256": dataset_sha256,
    }
    manifest["files"] = dict(sorted(manifest["files"].items()))
    atomic_write_text(directory / _MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def load_split(dataset: str, protocol: str, *, seed: int | None = None,
               directory: str | os.PathLike | None = None, verify: bool = True) -> pd.DataFrame:
    """Read a split file written by notebook 01, verifying its checksum.

    Raises
    ------
    FileNotFoundError
        If the file is missing (the message says to run notebook 01).
    SplitChecksumError
        If the file differs from the checksum recorded in ``MANIFEST.json``.
    """
    path = split_path(dataset, protocol, seed=seed, directory=directory)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} is missing; run notebook 01 "
                                f"(python -m cbirlib.run --only 01) to write it")
    if verify:
        entry = read_manifest(path.parent)["files"].get(path.name)
        actual = sha256_file(path)
        if entry is None or entry["sha256"] != actual:
            raise SplitChecksumError(
                f"{path} does not match {path.parent / _MANIFEST} (recorded "
                f"{None if entry is None else entry['sha256']}, actual {actual}); split files "
                "are not edited by hand: rerun notebook 01 to regenerate them")
    table = pd.read_csv(path, dtype={"path": str, "class_name": str, "group": str, "role": str},
                        keep_default_na=False)
    if list(table.columns) != SPLIT_COLUMNS:
        raise ValueError(f"{path}: columns {list(table.columns)} != {SPLIT_COLUMNS}")
    return table


# ------------------------------------------------------------------ datasets and files

#: Split datasets assembled from several registry archives; their split files
#: prefix each path with the member's registry name.
COMPOSITE_DATASETS: dict[str, tuple[str, ...]] = {
    "tiny_imagenet": ("tiny_imagenet_train", "tiny_imagenet_val"),
}


def split_datasets() -> list[str]:
    """Names of the datasets that have split protocols, in a fixed order."""
    return list(dict.fromkeys(p.dataset for p in PROTOCOLS.values()))


def dataset_index(dataset: str) -> pd.DataFrame:
    """Return the image index a protocol splits (registry index, or a composite's).

    For a composite (:data:`COMPOSITE_DATASETS`) the members' indexes are
    concatenated and each ``path`` is prefixed with ``<member>/``.
    """
    from . import datasets

    if dataset not in COMPOSITE_DATASETS:
        return datasets.load_index(dataset)
    frames = []
    for member in COMPOSITE_DATASETS[dataset]:
        frame = datasets.load_index(member).copy()
        frame["path"] = member + "/" + frame["path"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def image_file(dataset: str, path: str) -> Path:
    """Absolute file of a split row's ``path`` (notebooks 02-07 read images with it)."""
    from . import datasets

    if dataset in COMPOSITE_DATASETS:
        member, rest = path.split("/", 1)
        if member not in COMPOSITE_DATASETS[dataset]:
            raise ValueError(f"{path!r} does not start with a member of {dataset}: "
                             f"{COMPOSITE_DATASETS[dataset]}")
        return datasets.image_path(member, rest)
    return datasets.image_path(dataset, path)


def archive_sha256(dataset: str) -> str | None:
    """SHA-256 of the archive(s) a split dataset comes from (``+``-joined for composites)."""
    from . import datasets

    members = COMPOSITE_DATASETS.get(dataset, (dataset,))
    shas = [datasets.REGISTRY[m].sha256 for m in members]
    return "+".join(s for s in shas if s) or None


def write_protocol_splits(dataset: str, *, seed: int, repeats: int = 1,
                          directory: str | os.PathLike | None = None,
                          index: pd.DataFrame | None = None) -> list[dict]:
    """Build, check and write every protocol of ``dataset`` (notebook 01).

    Repeated protocols (Corel-1K 80/20) are written for seeds
    ``seed, seed + 1, ..., seed + repeats - 1``; the others once with ``seed``.

    Returns
    -------
    list of dict
        One per file: ``protocol``, ``seed``, ``path``, ``table`` (the split),
        ``report`` (:func:`leakage_report` of the file as read back from disk).
    """
    index = dataset_index(dataset) if index is None else index
    out = []
    for proto in protocols_for(dataset):
        for s in (range(seed, seed + repeats) if proto.repeated else [seed]):
            table = make_split(proto, index, seed=s)
            path = write_split(table, proto, seed=s, directory=directory,
                               dataset_sha256=archive_sha256(dataset))
            back = load_split(dataset, proto.name, seed=s, directory=path.parent)
            out.append({"protocol": proto, "seed": s if proto.seeded else None, "path": path,
                        "table": back, "report": leakage_report(back, proto)})
    return out


def regenerates_identically(dataset: str, protocol: str, *, seed: int,
                            index: pd.DataFrame | None = None,
                            directory: str | os.PathLike | None = None) -> bool:
    """True if rebuilding a split with ``seed`` gives the bytes of the file on disk."""
    proto = PROTOCOLS[f"{dataset}__{protocol}"]
    index = dataset_index(dataset) if index is None else index
    fresh = _csv_bytes(make_split(proto, index, seed=seed))
    return fresh == split_path(dataset, protocol, seed=seed, directory=directory).read_bytes()

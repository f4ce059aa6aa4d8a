"""End-to-end retrieval pipelines that notebooks call in one line each.

:func:`prepare_retrieval_data` loads a split's database, validation and query
images (subsampled for quick profiles); :func:`autoencoder_retrieval` trains an
autoencoder on them, encodes, ranks and scores; :func:`pixel_baselines` scores
raw pixels and PCA on the same queries. Notebook 02 uses all three; notebooks
03 and 04 read the feature indexes it writes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from . import features, hashing, models, retrieval, splits

__all__ = ["RETRIEVAL_PROTOCOLS", "RetrievalData", "prepare_retrieval_data", "train_on",
           "autoencoder_retrieval", "backbone_features", "hashing_split", "pixel_baselines"]

#: How each dataset is used for query-by-example retrieval in notebook 02:
#: split protocol, database role (indexed; the autoencoder trains on it), query
#: role, validation role (``None``: a slice of the database), image mode.
RETRIEVAL_PROTOCOLS: dict[str, dict] = {
    "medical_mnist": dict(protocol="80-10-10", database_role="train", query_role="test",
                          val_role="val", mode="L"),
    "gallbladder": dict(protocol="80-10-10-patient", database_role="train", query_role="test",
                        val_role="val", mode="L"),
    "cifar10": dict(protocol="45k-5k-10k", database_role="train", query_role="test",
                    val_role="val", mode="RGB"),
    "caltech101": dict(protocol="query-database", database_role="database", query_role="query",
                       val_role=None, mode="RGB"),
    "digits": dict(protocol="80-10-10", database_role="train", query_role="test",
                   val_role="val", mode="L"),
}


@dataclasses.dataclass
class RetrievalData:
    """Images and labels of one experiment (see :func:`prepare_retrieval_data`)."""

    dataset: str
    protocol: str
    database: pd.DataFrame
    train: pd.DataFrame
    val: pd.DataFrame
    queries: pd.DataFrame
    db_images: np.ndarray
    train_images: np.ndarray
    val_images: np.ndarray
    query_images: np.ndarray

    def describe(self) -> dict:
        """Sizes, for the notebook's protocol table."""
        return {"dataset": self.dataset, "split file": f"{self.dataset}__{self.protocol}.csv",
                "database (indexed)": len(self.database), "AE training": len(self.train),
                "AE validation": len(self.val), "queries": len(self.queries),
                "classes": int(self.database["label"].nunique()),
                "image": "x".join(map(str, self.db_images.shape[1:]))}


def prepare_retrieval_data(dataset: str, *, size: int, max_train: int, max_val: int,
                           max_queries: int, seed: int, progress: bool = True) -> RetrievalData:
    """Load the images of one split for training and retrieval (notebook 02).

    The split and roles come from :data:`RETRIEVAL_PROTOCOLS`.

    The whole ``database_role`` is indexed; the autoencoder trains on a
    stratified subsample of it (``max_train``, 0 = all) and validates on
    ``val_role`` (or, if ``None``, on a stratified slice of the database that is
    then excluded from training); ``max_queries`` queries are drawn stratified
    from ``query_role``.
    """
    if dataset not in RETRIEVAL_PROTOCOLS:
        raise KeyError(f"no retrieval protocol for {dataset!r}; known: {sorted(RETRIEVAL_PROTOCOLS)}")
    spec = RETRIEVAL_PROTOCOLS[dataset]
    protocol, database_role, query_role, val_role, mode = (
        spec["protocol"], spec["database_role"], spec["query_role"], spec["val_role"], spec["mode"])
    table = splits.load_split(dataset, protocol)
    database = splits.role_frame(table, database_role)
    queries = splits.subsample(splits.role_frame(table, query_role), max_queries, seed=seed)
    if val_role is None:
        val = splits.subsample(database, max(1, len(database) // 10), seed=seed + 1)
        pool = database.loc[~database["path"].isin(set(val["path"]))]
    else:
        val, pool = splits.role_frame(table, val_role), database
    train = splits.subsample(pool, max_train, seed=seed)
    val = splits.subsample(val, max_val, seed=seed)
    load = dict(size=size, mode=mode, progress=progress)
    db_images = features.load_images(dataset, database, **load)
    position = pd.Series(np.arange(len(database)), index=database["path"].to_numpy())
    return RetrievalData(dataset, protocol, database, train, val, queries, db_images,
                         db_images[position[train["path"]].to_numpy()],
                         features.load_images(dataset, val, **load),
                         features.load_images(dataset, queries, **load))


def train_on(data: RetrievalData, config: models.AutoencoderConfig, *, train: models.TrainConfig,
             accuracy_k: int = 20, progress: bool = True) -> models.TrainResult:
    """Train an autoencoder on ``data`` (or load it from the cache); notebooks 02 and 03.

    The per-epoch validation retrieval scores of
    :func:`cbirlib.retrieval.epoch_accuracy_callback` (against a 2,000-image
    training subset) go into the history. Notebook 03 calls this with notebook
    02's parameters and so reuses its trained weights from the cache.
    """
    callback_db = splits.subsample(data.train, 2000, seed=train.seed)
    position = pd.Series(np.arange(len(data.train)), index=data.train["path"].to_numpy())
    pick = position[callback_db["path"]].to_numpy()
    callback = retrieval.epoch_accuracy_callback(
        data.train_images[pick], data.train["label"].to_numpy()[pick], data.val_images,
        data.val["label"].to_numpy(), k=accuracy_k)
    return models.train_autoencoder(
        config, data.train_images, data.val_images, train=train, epoch_callback=callback,
        cache_extra={"callback": f"epoch_accuracy_callback k={accuracy_k} db=2000"},
        progress=progress)


def autoencoder_retrieval(data: RetrievalData, config: models.AutoencoderConfig, *,
                          train: models.TrainConfig, ks=(20, 40, 60, 80, 100),
                          accuracy_k: int = 20, progress: bool = True) -> dict:
    """Train (or load from cache), encode the database and queries, and score (notebook 02).

    Returns a dict with ``model``, ``history`` (per-epoch losses and validation
    retrieval scores, :func:`train_on`), ``best_epoch``, ``from_cache``,
    ``db_features``, ``query_features`` and ``report``
    (:class:`cbirlib.retrieval.RetrievalReport`).
    """
    result = train_on(data, config, train=train, accuracy_k=accuracy_k, progress=progress)
    db_feats = models.encode(result.model, data.db_images)
    q_feats = models.encode(result.model, data.query_images)
    report = retrieval.evaluate_features(q_feats, data.queries["label"], db_feats,
                                         data.database["label"], ks=ks)
    return {"model": result.model, "history": result.history, "best_epoch": result.best_epoch,
            "from_cache": result.from_cache, "db_features": db_feats, "query_features": q_feats,
            "report": report}


def backbone_features(dataset: str, table: pd.DataFrame, *, name: str, input_size: int,
                      load_size: int, stage: str = "penultimate", resize: str = "squash",
                      batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Pooled ImageNet-backbone features of a split's images, cached (notebooks 02, 03).

    Images are loaded as RGB at ``load_size`` (:func:`cbirlib.features.load_images`),
    then resized by the backbone's preprocessing to ``input_size`` (smaller than
    the weights' native size in quick profiles: say so next to the numbers).
    Features are cached by :func:`cbirlib.backbones.cached_features`.
    """
    from . import backbones

    images = features.load_images(dataset, table, size=load_size, mode="RGB", progress=progress)
    model = backbones.load_backbone(name, input_size=input_size, resize=resize)
    key = backbones.feature_cache_key(model, stage=stage, images=images, dataset=dataset)
    return backbones.cached_features(key, lambda: backbones.extract_features(
        model, images, stage=stage, batch_size=batch_size, progress=progress))


#: Roles of a split used as hashing query / database / training set, first present wins:
#: hashing protocols have all three; a train/val/test split queries with its test
#: images against its training images, on (a subsample of) which the hashes learn.
_HASH_ROLES = {"query": ("query", "test"), "database": ("database", "train"),
               "train": ("train", "database")}


def hashing_split(dataset: str, protocol: str, *, max_train: int, max_database: int,
                  max_queries: int, seed: int) -> dict[str, pd.DataFrame]:
    """Query, train and database tables of a split for hashing, subsampled (notebook 03).

    Roles follow :data:`_HASH_ROLES` (e.g. CIFAR-10 ``cifar10``: query / train /
    database; Medical MNIST ``80-10-10``: test queries against the training
    images, hashes learnt on a training subsample); ``max_*`` of 0 keeps the
    split's size. Subsampling is stratified (:func:`cbirlib.splits.subsample`).
    """
    table = splits.load_split(dataset, protocol)
    present = set(table["role"])
    pick = {}
    for use, candidates in _HASH_ROLES.items():
        role = next((r for r in candidates if r in present), None)
        if role is None:
            raise ValueError(f"{dataset}__{protocol} has no role among {candidates} for the "
                             f"hashing {use} set (roles: {sorted(present)})")
        pick[use] = splits.role_frame(table, role)
    limits = {"query": max_queries, "database": max_database, "train": max_train}
    return {use: splits.subsample(frame, limits[use], seed=seed + (use == "train"))
            for use, frame in pick.items()}


def pixel_baselines(data: RetrievalData, *, pca_dim: int, seed: int,
                    ks=(20, 40, 60, 80, 100)) -> dict:
    """Raw-pixel and PCA features on the same database and queries (notebook 02).

    Pixels are scaled to [0, 1] and flattened; PCA (``pca_dim`` components,
    scikit-learn, randomized solver with ``seed``) is fitted on the database.
    Returns ``{"raw pixels": (db, queries, report), "PCA-<d>": (...)}``.
    """
    from sklearn.decomposition import PCA

    db = data.db_images.reshape(len(data.db_images), -1).astype(np.float32) / 255
    q = data.query_images.reshape(len(data.query_images), -1).astype(np.float32) / 255
    pca = PCA(n_components=min(pca_dim, *db.shape), svd_solver="randomized",
              random_state=seed).fit(db)
    out = {}
    for name, (dbf, qf) in {"raw pixels": (db, q),
                            f"PCA-{pca.n_components_}": (pca.transform(db), pca.transform(q))}.items():
        out[name] = (dbf, qf, retrieval.evaluate_features(qf, data.queries["label"], dbf,
                                                          data.database["label"], ks=ks))
    return out


#: Hash methods compared in notebook 03: name -> (factory(n_bits, seed, epochs), uses labels).
HASH_METHODS: dict[str, tuple] = {
    "LSH": (lambda n, seed, epochs: hashing.LSH(n_bits=n, seed=seed), False),
    "PCAH": (lambda n, seed, epochs: hashing.PCAHash(n_bits=n, seed=seed), False),
    "ITQ": (lambda n, seed, epochs: hashing.ITQ(n_bits=n, seed=seed), False),
    "binary autoencoder": (lambda n, seed, epochs: hashing.BinaryAutoencoder(n_bits=n, seed=seed, epochs=epochs), False),
    "paper 000 hash layer, kNN similarity (unsupervised)": (
        lambda n, seed, epochs: hashing.DeepPairwiseHash(n_bits=n, seed=seed, epochs=epochs, similarity="knn"), False),
    "paper 000 hash layer, label similarity (supervised)": (
        lambda n, seed, epochs: hashing.DeepPairwiseHash(n_bits=n, seed=seed, epochs=epochs, similarity="labels"), True),
}


def run_hashing(sources: dict, labels: dict, *, bits, seed: int, epochs: int,
                methods: dict | None = None, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Fit every hash method at every code length on every feature source (notebook 03).

    Parameters
    ----------
    sources : dict
        ``name -> {"train": X, "database": X, "query": X}`` float features.
    labels : dict
        ``{"train": y, "database": y, "query": y}``.
    bits : sequence of int
    methods : dict, optional
        Default :data:`HASH_METHODS`.

    Returns
    -------
    (DataFrame, dict)
        One row per (source, method, bits) with the scores of
        :func:`cbirlib.retrieval.evaluate_codes`, encode time per image (µs) and
        bytes per image; methods that cannot produce that many bits (PCA-based
        methods with ``bits > d``) get a row with ``status`` saying so. The dict
        holds the full results (curves, codes) keyed by ``(source, method, bits)``.
    """
    import time

    from tqdm.auto import tqdm

    methods = HASH_METHODS if methods is None else methods
    rows, full = [], {}
    jobs = [(s, m, b) for s in sources for m in methods for b in bits]
    for source, method, n_bits in tqdm(jobs, desc="hashing", disable=not progress):
        feats = sources[source]
        factory, supervised = methods[method]
        row = {"features": source, "method": method, "bits": n_bits, "supervised": supervised,
               "feature dim": feats["train"].shape[1],
               "bytes per image": hashing.storage_bytes_per_image(n_bits)}
        try:
            model = factory(n_bits, seed, epochs)
            model.fit(feats["train"], labels["train"] if supervised else None)
        except ValueError as exc:
            rows.append({**row, "status": f"not applicable: {exc}"})
            continue
        start = time.perf_counter()
        db_codes = model.encode_packed(feats["database"])
        encode_us = 1e6 * (time.perf_counter() - start) / len(feats["database"])
        q_codes = model.encode_packed(feats["query"])
        scores = retrieval.evaluate_codes(q_codes, db_codes, labels["query"], labels["database"],
                                          n_bits=n_bits, seed=seed)
        full[(source, method, n_bits)] = {**scores, "model": model, "db_codes": db_codes,
                                          "query_codes": q_codes}
        rows.append({**row, "status": "ok", "encode time (us/image)": encode_us,
                     **{k: v for k, v in scores.items() if np.isscalar(v)}})
    return pd.DataFrame(rows), full

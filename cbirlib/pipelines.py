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


# --------------------------------------------------------------------------
# notebook 05: retrieval with missing regions (paper 002)
# --------------------------------------------------------------------------

#: Query/database protocols of notebook 05: dataset -> (split protocol, query role,
#: database role, split seed). Paris6k's relevance comes from its official ground
#: truth (good + ok relevant, junk and the query image itself ignored); the others'
#: from the class labels.
MASKED_QUERY_PROTOCOLS: dict[str, tuple[str, str, str, int | None]] = {
    "paris6k": ("official-queries", "query", "database", None),
    "corel1k": ("80-20", "test", "train", 0),
    "digits": ("query-database", "query", "database", None),
}


def masked_query_protocol(dataset: str, *, max_queries: int, seed: int, max_database: int = 0) -> dict:
    """Queries, database and relevance of one notebook-05 retrieval experiment.

    Parameters
    ----------
    dataset : str
        A key of :data:`MASKED_QUERY_PROTOCOLS`.
    max_queries : int
        Stratified subsample of the queries (0 = all; Paris6k always keeps its 12).
    seed : int
    max_database : int, keyword-only
        Stratified subsample of the database (0 = all; Paris6k always keeps its 250).

    Returns
    -------
    dict
        ``queries``, ``database`` (split tables), ``relevant`` and ``junk``
        (bool ``(n_queries, n_database)``; junk items are removed from the
        ranking before scoring), ``split`` (file name) and ``relevance`` (a
        sentence for the protocol table).
    """
    if dataset not in MASKED_QUERY_PROTOCOLS:
        raise KeyError(f"no notebook-05 protocol for {dataset!r}; known: {sorted(MASKED_QUERY_PROTOCOLS)}")
    protocol, q_role, db_role, split_seed = MASKED_QUERY_PROTOCOLS[dataset]
    table = splits.load_split(dataset, protocol, seed=split_seed)
    database = splits.role_frame(table, db_role).reset_index(drop=True)
    queries = splits.role_frame(table, q_role).reset_index(drop=True)
    split_name = f"{dataset}__{protocol}" + (f"__seed{split_seed}" if split_seed is not None else "") + ".csv"
    db_paths = database["path"].to_numpy()
    if dataset == "paris6k":
        from . import datasets

        gt = datasets.paris6k_ground_truth()
        relevant = np.zeros((len(queries), len(database)), dtype=bool)
        junk = np.zeros_like(relevant)
        names = []
        for i, path in enumerate(queries["path"]):
            rows = gt.loc[gt["path"] == path]
            if rows.empty:
                raise ValueError(f"paris6k query image {path} has no official ground truth")
            pos = set().union(*rows["good"], *rows["ok"])
            bad = set().union(*rows["junk"]) | {path}
            relevant[i] = np.isin(db_paths, list(pos))
            junk[i] = np.isin(db_paths, list(bad)) & ~relevant[i]
            names.append(";".join(rows["query"]))
        queries = queries.assign(query=names)
        relevance = ("official ground truth: good + ok relevant, junk and the query image itself "
                     "removed from the ranking")
    else:
        queries = splits.subsample(queries, max_queries, seed=seed).reset_index(drop=True)
        database = splits.subsample(database, max_database, seed=seed + 1).reset_index(drop=True)
        relevant = queries["label"].to_numpy()[:, None] == database["label"].to_numpy()[None, :]
        junk = np.zeros_like(relevant)
        relevance = "same class relevant"
    return {"queries": queries, "database": database, "relevant": relevant, "junk": junk,
            "split": split_name, "relevance": relevance}


def precision_top_k(query_feats: np.ndarray, db_feats: np.ndarray, relevant: np.ndarray,
                    junk: np.ndarray, *, ks=(1, 5, 10)) -> dict[str, np.ndarray]:
    """Per-query precision of the top ``k`` by Euclidean distance (paper 002 Table 2).

    Junk items are removed from each ranking first (revisitop). Returns
    ``{"P@k": (n_queries,), "capped P@k": (n_queries,)}`` for every ``k``:
    ``P@k`` is hits / k (paper 002's eq. 17, ``TP / (TP + FP)`` over the top
    ``k``); ``capped P@k`` is revisitop's form, hits / min(k, rank of the last
    relevant item) when all relevant items are in the top ``k``
    (:func:`cbirlib.metrics.precision_at_ks`, ``capped="revisitop"``).
    """
    from . import metrics

    q = np.asarray(query_feats, dtype=np.float64)
    x = np.asarray(db_feats, dtype=np.float64)
    d = (q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :]
    ranking = metrics.rank_by_distance(np.maximum(d, 0.0))
    rel = np.take_along_axis(relevant, ranking, axis=1)
    rel = metrics.remove_junk(rel, np.take_along_axis(junk, ranking, axis=1))
    n_rel = relevant.sum(axis=1)
    plain = metrics.precision_at_ks(rel, ks)
    capped = metrics.precision_at_ks(rel, ks, n_relevant=n_rel, capped="revisitop")
    out = {}
    for j, k in enumerate(ks):
        out[f"P@{k}"] = plain[:, j]
        out[f"capped P@{k}"] = capped[:, j]
    return out


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _cached_array(key: dict, compute):
    from . import backbones

    return backbones.cached_features(key, compute)


class MaskedFeatures:
    """Feature functions of notebook 05, computed together: ``features(images) -> {name: (n, d)}``.

    For each backbone: ``"<name>"`` (penultimate features, L2-normalised) and
    ``"<name> + colour + texture"`` (that vector concatenated with the colour
    autocorrelogram and Gabor blocks of :func:`cbirlib.descriptors.describe`,
    each block L2-normalised: paper 002's eq. 10); plus ``"colour + texture"``
    alone. Backbones see the whole image squashed to ``input_size``. The
    hand-crafted blocks are computed once per call, whatever the number of
    backbones.
    """

    def __init__(self, backbone_names, *, input_size: int, handcrafted=("autocorrelogram", "gabor"),
                 batch_size: int = 32) -> None:
        from . import backbones

        self.handcrafted = tuple(handcrafted)
        self.batch_size = int(batch_size)
        self.input_size = int(input_size)
        self.models = {name: backbones.load_backbone(name, input_size=input_size, resize="squash")
                       for name in backbone_names}
        self.names = (["colour + texture"] if self.handcrafted else []) + [
            n for b in self.models for n in ([b, f"{b} + colour + texture"] if self.handcrafted else [b])]

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        from . import backbones, descriptors

        out = {}
        hand = descriptors.describe(images, kinds=self.handcrafted) if self.handcrafted else None
        if hand is not None:
            out["colour + texture"] = hand
        for name, model in self.models.items():
            deep = _l2(backbones.extract_features(model, images, batch_size=self.batch_size, progress=False))
            out[name] = deep
            if hand is not None:
                out[f"{name} + colour + texture"] = np.concatenate([deep, hand], axis=1)
        return out

    def cache_key(self) -> dict:
        """What the features depend on (besides the images), for the database cache."""
        return {"backbones": sorted(self.models), "input_size": self.input_size, "handcrafted": self.handcrafted,
                "batch_size": self.batch_size}


def masked_feature_extractors(backbone_names, *, input_size: int, handcrafted=("autocorrelogram", "gabor"),
                              batch_size: int = 32) -> MaskedFeatures:
    """The :class:`MaskedFeatures` of notebook 05."""
    return MaskedFeatures(backbone_names, input_size=input_size, handcrafted=handcrafted, batch_size=batch_size)


def masked_query_retrieval(query_images: np.ndarray, db_images: np.ndarray, relevant: np.ndarray,
                           junk: np.ndarray, *, extractors: MaskedFeatures, frequencies, phases, methods,
                           model=None, duty_cycle: float = 0.5, orientation_deg: float = 0.0,
                           ks=(1, 5, 10), dataset: str = "", progress: bool = True):
    """Retrieval precision of original, masked and reconstructed queries (notebook 05, Table 2).

    Every query is destroyed by the same fringe mask (:func:`cbirlib.masks.fringe_mask`)
    per frequency and phase, reconstructed by each of ``methods``
    (:func:`cbirlib.inpainting.reconstruct`), described by ``extractors``
    (:class:`MaskedFeatures`) and ranked against the database
    (:func:`precision_top_k`). ``"original"`` is scored once (phase and
    frequency ``nan``); ``"masked"`` is ``x * M`` (zeros). Database features
    are cached under ``cache_dir("features")``.

    Returns
    -------
    per_query : DataFrame
        One row per (features, condition, frequency, phase, query) with the
        :func:`precision_top_k` columns.
    images : dict
        ``(condition, frequency, phase) -> uint8 images`` of the queries (for figures).
    db_feats : dict
        ``name -> database features``.
    """
    from tqdm.auto import tqdm

    from . import inpainting, masks as masks_mod
    from ._io import sha256_bytes

    size = query_images.shape[1]
    db_sha = sha256_bytes(np.ascontiguousarray(db_images).tobytes())
    key = {"model": "nb05-db", "stage": "all", "dataset": dataset, "images": db_sha, "version": 1,
           **extractors.cache_key()}
    stacked = _cached_array(key, lambda: np.concatenate([v for v in extractors(db_images).values()], axis=1))
    dims = {n: v.shape[1] for n, v in extractors(db_images[:1]).items()}
    bounds = np.cumsum([0] + list(dims.values()))
    db_feats = {n: stacked[:, a:b] for n, a, b in zip(dims, bounds[:-1], bounds[1:])}
    images = {("original", np.nan, np.nan): query_images}
    jobs = [(f, p, m) for f in frequencies for p in phases for m in ("masked", *methods)]
    rows = []

    def score(cond, f, p, imgs):
        feats = extractors(imgs)
        for name in extractors.names:
            res = precision_top_k(feats[name], db_feats[name], relevant, junk, ks=ks)
            for qi in range(len(imgs)):
                rows.append({"features": name, "condition": cond, "frequency_hz": f, "phase": p,
                             "query": qi, **{k: float(v[qi]) for k, v in res.items()}})

    score("original", np.nan, np.nan, query_images)
    for f, p, method in tqdm(jobs, desc=f"{dataset} masked queries", disable=not progress, mininterval=2):
        mask = masks_mod.fringe_mask(size, size, frequency=f, duty_cycle=duty_cycle,
                                     orientation_deg=orientation_deg, phase=p)
        imgs = inpainting.reconstruct(method, query_images, mask, model=model)
        images[(method, f, p)] = imgs
        score(method, f, p, imgs)
    return pd.DataFrame(rows), images, db_feats


def summarize_precision(per_query: pd.DataFrame, *, metric_columns=None) -> pd.DataFrame:
    """Mean over queries per phase, then mean and std over phases (notebook 05, Table 2).

    Returns one row per (features, condition, frequency) with ``<metric>`` and
    ``<metric> std`` (0 with a single phase; the original queries have no phase).
    """
    metric_columns = metric_columns or [c for c in per_query.columns if c.startswith(("P@", "capped P@"))]
    keys = ["features", "condition", "frequency_hz"]
    frame = per_query.fillna({"frequency_hz": -1.0, "phase": -1.0})
    per_phase = frame.groupby(keys + ["phase"], sort=False)[metric_columns].mean().reset_index()
    grouped = per_phase.groupby(keys, sort=False)[metric_columns]
    mean = grouped.mean()
    std = grouped.std(ddof=0).add_suffix(" std")
    out = pd.concat([mean, std], axis=1).reset_index()
    out["n_phases"] = grouped.size().to_numpy()
    out["frequency_hz"] = out["frequency_hz"].replace(-1.0, np.nan)
    return out


def inpainting_quality(images: np.ndarray, *, frequencies, phases, methods, model=None,
                       duty_cycle: float = 0.5, orientation_deg: float = 0.0,
                       progress: bool = True) -> pd.DataFrame:
    """SSIM, FSIM and PSNR of reconstructed vs original images per frequency (notebook 05, Table 1).

    Scores come from :func:`cbirlib.quality.quality_scores` on the whole image
    (kept pixels are copied back, so they match); ``"masked"`` (``x * M``) is
    scored too, as the floor. One row per (method, frequency, phase, image),
    with the mask's ``masked_fraction``.
    """
    from tqdm.auto import tqdm

    from . import inpainting, masks as masks_mod, quality

    size = images.shape[1]
    rows = []
    jobs = [(f, p, m) for f in frequencies for p in phases for m in ("masked", *methods)]
    for f, p, method in tqdm(jobs, desc="inpainting quality", disable=not progress, mininterval=2):
        mask = masks_mod.fringe_mask(size, size, frequency=f, duty_cycle=duty_cycle,
                                     orientation_deg=orientation_deg, phase=p)
        recon = inpainting.reconstruct(method, images, mask, model=model)
        frac = masks_mod.masked_fraction(mask)
        for i, (a, b) in enumerate(zip(images, recon)):
            rows.append({"method": method, "frequency_hz": f, "phase": p, "image": i,
                         "masked_fraction": frac, **quality.quality_scores(a, b)})
    return pd.DataFrame(rows)


def top_k_ranking(query_feats: np.ndarray, db_feats: np.ndarray, junk: np.ndarray, *, k: int) -> np.ndarray:
    """Database indices of the ``k`` nearest (Euclidean) non-junk items per query (notebook 05, Fig 6)."""
    from . import metrics

    q = np.asarray(query_feats, dtype=np.float64)
    x = np.asarray(db_feats, dtype=np.float64)
    d = np.maximum((q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :], 0.0)
    d[np.asarray(junk, dtype=bool)] = np.inf
    return metrics.rank_by_distance(d, k=k)


def precision_recovery(summary: pd.DataFrame, *, metric: str) -> pd.DataFrame:
    """Share of the precision lost by masking that each reconstruction wins back (notebook 05).

    ``(reconstructed - masked) / (original - masked)`` per (dataset, features,
    frequency, method), from :func:`summarize_precision` rows that carry a
    ``dataset`` column: 1 = all of the loss recovered, 0 = none, negative =
    worse than leaving the hole. ``nan`` where masking lost nothing.
    """
    keys = ["dataset", "features"]
    orig = summary.loc[summary["condition"] == "original"].set_index(keys)[metric]
    masked = summary.loc[summary["condition"] == "masked"].set_index(keys + ["frequency_hz"])[metric]
    rows = []
    for _, r in summary.loc[~summary["condition"].isin(["original", "masked"])].iterrows():
        o, m = orig.loc[(r["dataset"], r["features"])], masked.loc[(r["dataset"], r["features"], r["frequency_hz"])]
        lost = o - m
        rows.append({"dataset": r["dataset"], "features": r["features"], "frequency_hz": r["frequency_hz"],
                     "method": r["condition"], f"original {metric}": o, f"masked {metric}": m,
                     f"reconstructed {metric}": r[metric],
                     "recovered share": (r[metric] - m) / lost if abs(lost) > 1e-12 else np.nan})
    return pd.DataFrame(rows)


__all__ += ["MASKED_QUERY_PROTOCOLS", "masked_query_protocol", "precision_top_k", "MaskedFeatures",
            "masked_feature_extractors",
            "masked_query_retrieval", "summarize_precision", "inpainting_quality",
            "top_k_ranking", "precision_recovery"]

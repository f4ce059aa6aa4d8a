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
# Notebook 06: paper 003, EfficientNet block 6 / block 7 features, fine-tuned
# --------------------------------------------------------------------------

__all__ += ["PAPER003_PROTOCOLS", "PAPER003_MAP_CONVENTIONS", "cosine_retrieval_scores",
            "cosine_search_time", "blocks_experiment", "mean_std_table"]

#: Retrieval protocols of notebook 06. ``test->train``: the test images query the
#: training images (our main protocol); ``test->all others``: they query every
#: other image of the dataset (the query itself removed); ``test->all``: every
#: image including the query itself (ranked first), which is the only reading
#: under which paper 003's R@100 equals its P@100 (100 relevant images per query).
PAPER003_PROTOCOLS = ("test->train", "test->all others", "test->all")

#: mAP@K conventions reported in notebook 06 (``cbirlib.metrics`` names): the
#: main one divides by min(K, relevant images) (ml_metrics' ``apk``), the other
#: by the relevant images found in the top K (DeepHash's ``CalcTopMap``).
PAPER003_MAP_CONVENTIONS = {"min_k_relevant": "mAP@K", "retrieved": "mAP@K (retrieved)"}


def cosine_retrieval_scores(query_feats: np.ndarray, query_labels, db_feats: np.ndarray,
                            db_labels, *, exclude=None, ks=(10, 20, 100),
                            map_ks=(5, 10, 20, 100)) -> tuple[dict, pd.DataFrame]:
    """Paper 003's scores of cosine-distance retrieval on L2-normalised features (notebook 06).

    Ranking: ``1 - cos`` (:func:`cbirlib.finetune.cosine_distances`), ties in
    database order. Relevant: same label. ``mAP``: whole ranking, divided by
    all relevant images (TREC, paper 003 eq. 6-7). ``mAP@K``: for both
    :data:`PAPER003_MAP_CONVENTIONS`. ``P@K`` = hits / K, ``R@K`` = hits /
    relevant images in the database (eq. 8-9).

    Parameters
    ----------
    exclude : array of int, optional, keyword-only
        Per query, a database index to leave out (the query itself when the
        database is the whole dataset); ``None``: nothing is left out.

    Returns
    -------
    (dict, DataFrame)
        Means over queries, and the per-query values (with ``label``).
    """
    from . import finetune, metrics

    qlab, dblab = np.asarray(query_labels), np.asarray(db_labels)
    d = finetune.cosine_distances(query_feats, db_feats)
    n_rel = metrics.count_relevant(qlab, dblab)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.intp)
        if exclude.shape != (len(qlab),):
            raise ValueError("exclude needs one database index per query")
        d[np.arange(len(qlab)), exclude] = np.inf
        n_rel = n_rel - (dblab[exclude] == qlab)
    ranking = metrics.rank_by_distance(d, ties="stable")
    rel = metrics.relevance_matrix(qlab, dblab, ranking)
    if exclude is not None:
        rel = rel[:, :-1]  # the excluded item is the only one at distance inf: ranked last
    cols = {"label": qlab,
            "mAP": metrics.average_precision(rel, normalize="all_relevant", n_relevant=n_rel)}
    for conv, label in PAPER003_MAP_CONVENTIONS.items():
        for k in map_ks:
            cols[label.replace("@K", f"@{k}")] = metrics.average_precision(
                rel, normalize=conv, k=k, n_relevant=n_rel, empty="zero")
    for k in ks:
        cols[f"P@{k}"] = metrics.precision_at_k(rel, k)
    for k in ks:
        cols[f"R@{k}"] = metrics.recall_at_k(rel, k, n_relevant=n_rel)
    per_query = pd.DataFrame(cols)
    summary = per_query.drop(columns="label").mean().to_dict()
    summary["relevant per query"] = float(n_rel.mean())
    summary["database"] = int(rel.shape[1])
    return summary, per_query


def cosine_search_time(query_feats: np.ndarray, db_feats: np.ndarray, *, k: int = 100,
                       database_size: int = 0, repeats: int = 7, seed: int = 0) -> dict:
    """Time of exhaustive cosine search per query, in ms (notebook 06's efficiency table).

    Features are L2-normalised, then for all queries at once: one matrix
    product with the database (``product_ms``, the part that grows with the
    dimension) and a top-``k`` selection (``select_ms``: ``argpartition`` +
    sort of the ``k``, independent of the dimension); ``search_ms`` is their
    sum. ``database_size > len(db_feats)`` tiles the database (with tiny seeded
    noise) to that many rows, so the effect of the dimension shows above the
    fixed overheads of a 1,000-image database. Each part is the best of
    ``repeats``, divided by the number of queries.
    """
    import time

    from . import finetune

    q = finetune.l2_normalize(query_feats)
    db = finetune.l2_normalize(db_feats)
    if database_size > len(db):
        rng = np.random.default_rng(seed)
        reps = -(-int(database_size) // len(db))
        db = np.tile(db, (reps, 1))[:database_size]
        db = finetune.l2_normalize(db + rng.normal(0, 1e-3, db.shape).astype(np.float32))
    db = np.ascontiguousarray(db)
    k = min(int(k), len(db))
    product, select = np.inf, np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        sims = q @ db.T
        t1 = time.perf_counter()
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        np.take_along_axis(top, order, axis=1)
        t2 = time.perf_counter()
        product, select = min(product, t1 - t), min(select, t2 - t1)
    return {"search_ms": 1e3 * (product + select) / len(q), "product_ms": 1e3 * product / len(q),
            "select_ms": 1e3 * select / len(q), "database": int(len(db)),
            "dim": int(db.shape[1]), "bytes_per_image": 4 * int(db.shape[1])}


def blocks_experiment(dataset: str, protocol: str, *, seeds, models, input_size: int,
                      config, stages=("block6", "block7"), max_per_class: int = 0,
                      batch_size: int = 8, ks=(10, 20, 100), map_ks=(5, 10, 20, 100),
                      progress: bool = True) -> dict:
    """Paper 003's experiment: fine-tune each model per split seed, score block features (notebook 06).

    For every model: the frozen part below "the top 80 layers" runs once over
    all images (:func:`cbirlib.finetune.lower_outputs`, cached); off-the-shelf
    block features come from the pretrained upper part; for each split seed the
    network is fine-tuned on that split's training images
    (:func:`cbirlib.finetune.fine_tune`, seed = split seed, cached) and its
    block features are taken for every image. Images are squashed to
    ``input_size`` squares (``features.load_images``, bilinear), as Keras
    pipelines that "resize images to the model input" do.

    Parameters
    ----------
    seeds : sequence of int
        Split seeds (``<dataset>__<protocol>__seed<k>.csv``).
    models : sequence of str
        Backbone names (:func:`cbirlib.backbones.available_backbones`).
    input_size : int, keyword-only
        Network input side; 0 = each model's native size (224 / 240 / 260).
    config : cbirlib.finetune.FineTuneConfig
        Its ``seed`` is replaced by each split seed.
    max_per_class : int, keyword-only
        Keep this many images per class (stratified, smoke profile); 0 = all.

    Returns
    -------
    dict
        ``scores``: one row per model x features (off-the-shelf / fine-tuned)
        x seed x stage x retrieval protocol (:data:`PAPER003_PROTOCOLS`) with
        the means of :func:`cosine_retrieval_scores`; ``per_class``: the same
        by query class; ``history``: fine-tuning losses; ``plans``: the
        :class:`cbirlib.finetune.UnfreezePlan` rows; ``features``:
        ``{(model, features, seed, stage): array}`` for every image;
        ``images``: the image table (``path``, ``label``, ``class_name``);
        ``labels``: class index per image; ``roles``: ``{seed: array of roles}``;
        ``classes``: the dataset labels; ``input_sizes``: ``{model: side}``.
    """
    import dataclasses as dc

    from . import backbones, finetune

    seeds = [int(s) for s in seeds]
    split_tables = {s: splits.load_split(dataset, protocol, seed=s) for s in seeds}
    base = split_tables[seeds[0]]
    if max_per_class > 0:  # each role of the first seed's split cut in proportion (smoke)
        n_cls = base["label"].nunique()
        base = pd.concat([splits.subsample(part, max(1, round(max_per_class * n_cls * len(part)
                                                              / len(base))), seed=seeds[0])
                          for _, part in base.groupby("role", sort=False)])
    base = (base.sort_values("path", kind="stable")[["path", "label", "class_name"]]
            .reset_index(drop=True))
    classes, cls = np.unique(base["label"].to_numpy(), return_inverse=True)
    roles = {s: split_tables[s].set_index("path")["role"].reindex(base["path"]).to_numpy()
             for s in seeds}
    score_rows, class_rows, histories, plans, feats, sizes = [], [], [], [], {}, {}
    for name in models:
        net = backbones.load_backbone(name, input_size=input_size or None, resize="squash")
        sizes[name] = net.input_size
        pixels = features.load_images(dataset, base, size=net.input_size, mode="RGB",
                                      progress=progress)
        plan = finetune.unfreeze_plan(net, config.top_layers)
        plans.append({**plan.describe(), "input size": net.input_size})
        lower = finetune.lower_outputs(net, pixels, cut=plan.cut, batch_size=batch_size,
                                       progress=progress)
        off = finetune.upper_features(net, lower, cut=plan.cut, stages=stages)
        for seed in seeds:
            train = np.flatnonzero(roles[seed] == "train")
            test = np.flatnonzero(roles[seed] == "test")
            result = finetune.fine_tune(
                net, lower[train], cls[train], n_classes=len(classes),
                config=dc.replace(config, seed=seed), plan=plan, progress=progress,
                cache_extra={"dataset": dataset, "protocol": protocol, "split_seed": seed,
                             "max_per_class": int(max_per_class)})
            histories.append(result.history.assign(model=name, seed=seed,
                                                   from_cache=result.from_cache))
            tuned = finetune.upper_features(result.backbone, lower, cut=plan.cut, stages=stages)
            everyone = np.arange(len(base))
            setups = {"test->train": (test, train, None),
                      "test->all others": (test, everyone, test),
                      "test->all": (test, everyone, None)}
            for kind, fs in (("off-the-shelf", off), ("fine-tuned", tuned)):
                for stage in stages:
                    feats[(name, kind, seed, stage)] = fs[stage]
                    for proto, (q, db, excl) in setups.items():
                        summary, per_query = cosine_retrieval_scores(
                            fs[stage][q], cls[q], fs[stage][db], cls[db], exclude=excl,
                            ks=ks, map_ks=map_ks)
                        ident = {"model": name, "features": kind, "seed": seed,
                                 "block": stage, "d": int(fs[stage].shape[1]),
                                 "protocol": proto}
                        score_rows.append({**ident, **summary})
                        by_class = per_query.groupby("label").mean().reset_index()
                        by_class.insert(1, "class_name",
                                        [str(base["class_name"].to_numpy()[cls == c][0])
                                         for c in by_class["label"]])
                        for row in by_class.to_dict("records"):
                            class_rows.append({**ident, **row})
    return {"scores": pd.DataFrame(score_rows), "per_class": pd.DataFrame(class_rows),
            "history": pd.concat(histories, ignore_index=True), "plans": pd.DataFrame(plans),
            "features": feats, "images": base, "labels": cls, "roles": roles,
            "classes": classes, "input_sizes": sizes}


def mean_std_table(scores: pd.DataFrame, *, by, metrics_cols, decimals: int = 3) -> pd.DataFrame:
    """Mean and sample std over seeds, as ``<metric>`` and ``<metric> std`` columns (notebook 06).

    ``std`` is the sample standard deviation (``ddof=1``; 0 for one seed),
    the usual "mean ± std over three runs".
    """
    g = scores.groupby(list(by), sort=False)[list(metrics_cols)]
    mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
    out = mean.copy()
    for c in metrics_cols:
        out.insert(out.columns.get_loc(c) + 1, f"{c} std", std[c])
    out.insert(0, "seeds", g.size())
    return out.reset_index()


#: Paper 003's Table III class labels -> Corel-1K folder class names here.
PAPER003_CLASSES = {"Africans": "africa", "Architecture": "buildings", "Beach": "beach",
                    "Buses": "buses", "Dinosaur": "dinosaurs", "Elephant": "elephants",
                    "Food": "food", "Horses": "horses", "Mountains": "mountains",
                    "Roses": "flowers"}

#: Paper 003's EfficientNet-B0..B2 -> the stand-in with the same block widths here.
PAPER003_STAND_INS = {"B0": "efficientnet_lite0", "B1": "efficientnet_lite1",
                      "B2": "efficientnet_lite2"}

__all__ += ["PAPER003_CLASSES", "PAPER003_STAND_INS", "image_size_facts",
            "record_paper003_claims"]


def image_size_facts(dataset: str, table: pd.DataFrame) -> dict:
    """Image count, classes, images per class and (long, short) sides of a dataset (notebook 06).

    Reads only the image headers (Pillow). ``long side`` / ``short side`` are
    the values shared by every image, or ``nan`` if the images differ.
    """
    from PIL import Image

    sizes = []
    for p in table["path"]:
        with Image.open(splits.image_file(dataset, p)) as im:
            sizes.append(im.size)
    longs, shorts = {max(s) for s in sizes}, {min(s) for s in sizes}
    per_class = table.groupby("label").size()
    return {"number of images": len(table), "number of categories": int(per_class.size),
            "images per category": int(per_class.iloc[0]) if per_class.nunique() == 1 else
            float("nan"),
            "image long side": longs.pop() if len(longs) == 1 else float("nan"),
            "image short side": shorts.pop() if len(shorts) == 1 else float("nan"),
            "sizes": pd.Series([f"{w}x{h}" for w, h in sizes]).value_counts().to_dict()}


def record_paper003_claims(rec, table1: pd.DataFrame, per_class: pd.DataFrame, *,
                           dataset: str, protocol: str, n_seeds: int, facts: dict,
                           our_protocol: str) -> None:
    """Give every paper 003 claim a verdict (notebook 06).

    Parameters
    ----------
    rec : cbirlib.claims.ClaimsRecorder
    table1 : DataFrame
        :func:`mean_std_table` of the fine-tuned scores by model, features,
        block and protocol (columns ``d``, ``mAP``, ``mAP@K``, ``P@K``, ``R@K``
        and their ``std``).
    per_class : DataFrame
        Fine-tuned per-class means over seeds: ``model``, ``block``,
        ``protocol``, ``class_name``, ``mAP@10/20/100``.
    protocol : str
        The retrieval protocol whose values go beside the claims.
    n_seeds : int
        Split seeds run.
    facts : dict
        :func:`image_size_facts` of the dataset.
    our_protocol : str
        Written beside every value.

    Rules: the feature widths ``d`` of B0-B5 are checked against torchvision's
    architectures (no weights needed) and the dataset facts against the
    images; every other number of the paper's own models needs EfficientNet-B*
    ImageNet weights that are not available here, so it is "not checkable", with
    our EfficientNet-Lite value beside B0 / B1 / B2 when that stand-in ran;
    numbers the paper copies from other methods ([7]-[10]) are "not checkable"
    (not re-implemented). On another dataset than Corel-1K (smoke profile)
    every claim is "not checkable".
    """
    from . import backbones
    from .claims import Tolerance

    claims = rec.claims.loc[rec.claims["paper"] == "p003"]
    corel = dataset == "corel1k"
    smoke = f"run on {dataset} (smoke profile), not Corel-1K"
    exact = Tolerance()
    t1 = table1.loc[table1["protocol"] == protocol].set_index(["model", "block"])
    pc = per_class.loc[per_class["protocol"] == protocol].set_index(
        ["model", "block", "class_name"])

    def model_for(paper_model: str, block: str) -> tuple[str | None, bool]:
        """(backbone that ran, is it the paper's own model)."""
        real = f"efficientnet_{paper_model.lower()}"
        if (real, block) in t1.index:
            return real, True
        name = PAPER003_STAND_INS.get(paper_model)
        return (name, False) if name is not None and (name, block) in t1.index else (None, False)

    def ours(paper_model: str, block: str, column: str, scale: float):
        name, real = model_for(paper_model, block)
        if name is None:
            return None, None, ""
        row = t1.loc[(name, block)]
        std = row.get(f"{column} std", np.nan)
        return (scale * float(row[column]), scale * float(std),
                "" if real else backbones.display_name(name))

    def verdict_reason(paper_model: str, block: str, stand: str) -> str | None:
        if not corel:
            return smoke
        if model_for(paper_model, block)[1]:
            return None  # the paper's own model ran: judged like any value
        return weights_reason(paper_model, stand)

    def weights_reason(paper_model: str, stand_in: str) -> str:
        why = (f"EfficientNet-{paper_model} ImageNet weights are not available here "
               "(loader ready: cbirlib.backbones.load_backbone)")
        return (f"{why}; value shown is the stand-in {stand_in}, fine-tuned the same way"
                if stand_in else f"{why}; its stand-in did not run in this profile"
                if paper_model in PAPER003_STAND_INS else why)

    for c in claims.itertuples():
        key = ("p003", c.table, c.row, c.column)
        literature = c.row.startswith("[") or "[10]" in c.column or "[10]" in c.row or \
            "[8]" in c.row
        if literature:
            rec.record(*key, not_checkable="value of another method quoted by the paper "
                       "(not re-implemented here)")
            continue
        if c.table == "Table I":
            model, block = c.row.split(" / ")
            block = block.lower()
            if c.column == "d":
                i = int(model[1])
                rec.record(*key, backbones.stage_spec(f"efficientnet_b{i}", block).channels,
                           tolerance=exact, our_protocol=f"channels of torchvision "
                           f"EfficientNet-B{i} {block} (architecture, no weights needed)")
                continue
            val, std, stand = ours(model, block, c.column, 1.0)
            rec.record(*key, val, reproduced_std=std, our_protocol=our_protocol, stand_in=stand,
                       not_checkable=verdict_reason(model, block, stand))
        elif c.table == "Table II":
            model = c.row.split("(")[1].split()[0]                       # "B0" / "B4"
            val, std, stand = ours(model, "block7", c.column, 100.0)
            rec.record(*key, val, reproduced_std=std, our_protocol=our_protocol, stand_in=stand,
                       not_checkable=verdict_reason(model, "block7", stand))
        elif c.table == "Table III":
            metric, who = c.column.split(" / ")
            model = who.split()[0]
            name, real = model_for(model, "block7")
            val, stand = None, ""
            if name is not None and corel:
                stand = "" if real else backbones.display_name(name)
                if c.row == "Mean":
                    val = 100 * float(pc.loc[(name, "block7"), metric].mean())
                else:
                    val = 100 * float(pc.loc[(name, "block7", PAPER003_CLASSES[c.row]), metric])
            rec.record(*key, val, our_protocol=our_protocol, stand_in=stand,
                       not_checkable=verdict_reason(model, "block7", stand))
        elif c.row.startswith("Analysis of feature extraction points"):
            block = "block" + c.row.split()[-1]
            rec.record(*key, backbones.stage_spec("efficientnet_b0", block).channels,
                       tolerance=exact, our_protocol="channels of torchvision EfficientNet-B0 "
                       f"{block} (architecture, no weights needed)")
        elif c.row == "Corel-1K dataset":
            value = facts.get(c.column, np.nan)
            if corel and np.isfinite(value):
                rec.record(*key, value, tolerance=exact, our_protocol=f"counted on the "
                           f"{dataset} images ({facts.get('sizes')})")
            else:
                rec.record(*key, None if not np.isfinite(value) else value,
                           not_checkable=smoke if not corel else "images differ")
        elif c.row == "Table I experiments":
            rec.record(*key, n_seeds, tolerance=exact, our_protocol=f"split files "
                       f"{dataset}__{protocol}__seed0..{n_seeds - 1}")
        elif "Africans / B0" in c.row or "(our models)" in c.row:
            val, stand = None, ""
            name, real = model_for("B0", "block7")
            if corel and name is not None:
                stand = "" if real else backbones.display_name(name)
                rows = (["africa"] if "Africans" in c.row else
                        ["buildings", "beach", "elephants", "mountains"])
                val = 100 * float(pc.loc[[(name, "block7", r) for r in rows], c.column].mean())
            rec.record(*key, val, our_protocol=our_protocol, stand_in=stand,
                       not_checkable=verdict_reason("B0", "block7", stand))
        else:  # B4 statements (mAP / mAP@100 / R@100 of B4 block 7)
            val, _, stand = ours("B4", "block7", c.column, 100.0) if c.column in t1.columns \
                else (None, None, "")
            rec.record(*key, val, our_protocol=our_protocol, stand_in=stand,
                       not_checkable=verdict_reason("B4", "block7", stand))


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

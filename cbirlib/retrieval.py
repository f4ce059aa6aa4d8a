"""Query-by-example retrieval on feature vectors and its evaluation.

Notebook 02 ranks the database (training) features for every query (test)
feature by Euclidean distance, exactly and vectorised, and scores the ranking
with :mod:`cbirlib.metrics`; notebooks 03, 04 and 06 reuse
:func:`evaluate_features` for their float-feature baselines.

Conventions (named once here, written next to every table):

* ranking: brute-force Euclidean distance, ties in database order
  (``metrics.rank_by_distance(ties="stable")``);
* relevance: same label;
* ``precision@K``, ``recall@K`` (relevant = every database image of the query's
  class), ``F1@K``;
* ``accuracy@K``: the plurality label of the top K equals the query's label
  (``metrics.retrieval_accuracy_at_k(definition="knn")``, paper 001's reading);
* ``mAP@K``: ``normalize="retrieved"`` (relevant items in the top K, the
  DeepHash convention), queries with no hit count as 0;
* ``mAP`` (no K): over the whole ranking, ``normalize="all_relevant"`` (the
  TREC definition, equal to scikit-learn's ``average_precision_score``).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd

from . import metrics
from .features import check_features

__all__ = ["RetrievalReport", "euclidean_search", "evaluate_features", "time_queries",
           "epoch_accuracy_callback", "evaluate_codes", "hamming_pr_by_radius"]

#: Distance-matrix block size (elements) bounding memory during evaluation.
_BLOCK = 1 << 25


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x, dtype=np.float64)


def _distances(q: np.ndarray, x: np.ndarray, x_norms: np.ndarray) -> np.ndarray:
    """Exact Euclidean distances of a query block to the database (float64 accumulate)."""
    d2 = _sq_norms(q)[:, None] - 2.0 * (q.astype(np.float64) @ x.astype(np.float64).T) + x_norms
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2)


def euclidean_search(queries: np.ndarray, database: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` database items per query by Euclidean distance (notebooks 02, 03).

    A thin wrapper over :class:`cbirlib.index.BruteForceIndex` (vectorised,
    exact, ties in database order). Returns ``(distances, indices)``, each
    ``(n_queries, k)``; ``k`` is clipped to the database size.
    """
    from .index import BruteForceIndex

    queries = check_features(queries, what="queries")
    database = check_features(database, what="database")
    if queries.shape[1] != database.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} dimensions, the database "
                         f"{database.shape[1]}")
    return BruteForceIndex().build(database).knn(queries, min(int(k), len(database)))


@dataclasses.dataclass
class RetrievalReport:
    """Scores of one retrieval run (see the module docstring for definitions).

    Attributes
    ----------
    at_k : DataFrame
        One row per K: ``K, precision, recall, f1, accuracy, map_at_k``.
    map_all : float
        mAP over the whole ranking (``all_relevant``).
    per_query : DataFrame
        ``label``, ``ap`` (whole ranking) and ``precision@K`` / ``accuracy@K`` /
        ``recall@K`` for every K.
    per_class : DataFrame
        Means of ``per_query`` by query label.
    nn_purity : float
        Fraction of queries whose nearest database item has their label.
    r_precision : float
        Mean R-precision: precision (= recall = F1) at K = R, the number of
        relevant database items of each query.
    """

    at_k: pd.DataFrame
    map_all: float
    per_query: pd.DataFrame
    per_class: pd.DataFrame
    nn_purity: float
    r_precision: float

    def summary(self) -> dict:
        """Flat dict: ``mAP`` and ``<metric>@<K>`` for every K (for claims and tables)."""
        out = {"mAP": self.map_all, "nn_purity": self.nn_purity, "r_precision": self.r_precision}
        for row in self.at_k.itertuples():
            for m in ("precision", "recall", "f1", "accuracy", "map_at_k"):
                out[f"{m}@{row.K}"] = getattr(row, m)
        return out


def evaluate_features(query_feats: np.ndarray, query_labels, db_feats: np.ndarray, db_labels, *,
                      ks=(20, 40, 60, 80, 100), block: int | None = None) -> RetrievalReport:
    """Rank the database for every query and score it (notebooks 02, 03, 04, 06).

    Works in blocks of queries, so the full distance matrix is never held:
    10,000 queries x 45,000 database items fit in memory. Every metric uses the
    conventions in the module docstring.

    Raises
    ------
    ValueError
        For NaN/inf features, mismatched dimensions, a database with a single
        class (every ranking would be perfect: the scores would mean nothing),
        or K larger than the database.
    """
    query_feats = check_features(query_feats, what="query features")
    db_feats = check_features(db_feats, what="database features")
    qlab, dblab = np.asarray(query_labels), np.asarray(db_labels)
    if len(qlab) != len(query_feats) or len(dblab) != len(db_feats):
        raise ValueError("one label per feature row is needed")
    if query_feats.shape[1] != db_feats.shape[1]:
        raise ValueError(f"queries have {query_feats.shape[1]} dimensions, the database "
                         f"{db_feats.shape[1]}")
    if len(np.unique(dblab)) < 2:
        raise ValueError("the database holds a single class: every ranking is perfect and "
                         "retrieval scores are meaningless; use a dataset with >= 2 classes")
    ks = sorted(int(k) for k in ks)
    if ks[-1] > len(db_feats):
        raise ValueError(f"K = {ks[-1]} exceeds the database size {len(db_feats)}")
    block = block or max(1, _BLOCK // len(db_feats))
    norms = _sq_norms(db_feats)
    n_rel_all = metrics.count_relevant(qlab, dblab)
    cols: dict[str, list] = {"ap": [], "r_precision": []}
    names = [f"{m}@{k}" for k in ks for m in ("precision", "recall", "f1", "accuracy", "ap")]
    cols.update({n: [] for n in names})
    nn_hits = []
    for s in range(0, len(query_feats), block):
        q, lab, n_rel = query_feats[s:s + block], qlab[s:s + block], n_rel_all[s:s + block]
        d = _distances(q, db_feats, norms)
        full = metrics.mean_average_precision_from_distances(
            d, lab, dblab, normalize="all_relevant", ties="stable")
        cols["ap"].append(full.per_query)
        r_ranking = metrics.rank_by_distance(d, k=max(1, int(n_rel.max())), ties="stable")
        cols["r_precision"].append(metrics.r_precision(
            metrics.relevance_matrix(lab, dblab, r_ranking), n_relevant=n_rel))
        ranking = metrics.rank_by_distance(d, k=ks[-1], ties="stable")
        rel = metrics.relevance_matrix(lab, dblab, ranking)
        ranked_labels = dblab[ranking]
        nn_hits.append(rel[:, 0])
        for k in ks:
            cols[f"precision@{k}"].append(metrics.precision_at_k(rel, k, n_relevant=n_rel))
            cols[f"recall@{k}"].append(metrics.recall_at_k(rel, k, n_relevant=n_rel))
            cols[f"f1@{k}"].append(metrics.f1_at_k(rel, k, n_relevant=n_rel))
            cols[f"accuracy@{k}"].append(metrics.retrieval_accuracy_at_k(
                rel, k, definition="knn", query_labels=lab, ranked_labels=ranked_labels))
            cols[f"ap@{k}"].append(metrics.average_precision(
                rel, normalize="retrieved", k=k, n_relevant=n_rel, empty="zero"))
    per_query = pd.DataFrame({n: np.concatenate(v) for n, v in cols.items()})
    per_query.insert(0, "label", qlab)
    at_k = pd.DataFrame([{"K": k, "precision": per_query[f"precision@{k}"].mean(),
                          "recall": per_query[f"recall@{k}"].mean(),
                          "f1": per_query[f"f1@{k}"].mean(),
                          "accuracy": per_query[f"accuracy@{k}"].mean(),
                          "map_at_k": per_query[f"ap@{k}"].mean()} for k in ks])
    per_class = per_query.groupby("label").mean().reset_index()
    per_class.insert(1, "queries", per_query.groupby("label").size().to_numpy())
    return RetrievalReport(at_k, float(per_query["ap"].mean()), per_query, per_class,
                           float(np.concatenate(nn_hits).mean()),
                           float(per_query["r_precision"].mean()))


def time_queries(query_feats: np.ndarray, db_feats: np.ndarray, *, k: int, n_single: int = 100,
                 repeats: int = 3) -> dict:
    """Measure Euclidean brute-force search time per query, in milliseconds.

    The database is indexed once (:class:`cbirlib.index.BruteForceIndex`), then
    ``single_ms``: median over ``n_single`` queries searched one at a time (what
    a user waiting for one query sees; the papers' "retrieval time per query");
    ``batched_ms``: a whole batch of queries divided by its size (best of
    ``repeats``). Used by notebook 02; notebook 04 compares indexes properly.
    """
    from .index import BruteForceIndex

    query_feats = check_features(query_feats, what="queries")
    index = BruteForceIndex().build(check_features(db_feats, what="database"))
    k = min(int(k), len(db_feats))
    single = []
    for q in query_feats[:n_single]:
        t = time.perf_counter()
        index.knn(q[None], k)
        single.append(time.perf_counter() - t)
    batched = []
    for _ in range(repeats):
        t = time.perf_counter()
        index.knn(query_feats, k)
        batched.append((time.perf_counter() - t) / len(query_feats))
    return {"single_ms": 1e3 * float(np.median(single)), "batched_ms": 1e3 * min(batched),
            "n_database": int(len(db_feats)), "dim": int(db_feats.shape[1])}


def epoch_accuracy_callback(database_images: np.ndarray, database_labels, query_images: np.ndarray,
                            query_labels, *, k: int = 20):
    """A :func:`cbirlib.models.train_autoencoder` callback: retrieval scores per epoch.

    After each epoch the current encoder embeds ``query_images`` (validation)
    and ``database_images`` (a training subset); the callback returns
    ``val_accuracy@k`` (kNN-vote accuracy, as in the tables), ``val_precision@k``
    and ``val_map``. Paper 001's Fig 8 plots an "accuracy" per epoch without
    defining it; notebook 02 plots this retrieval accuracy instead and says so.
    """
    from .models import encode

    def callback(model, epoch):
        report = evaluate_features(encode(model, query_images), query_labels,
                                   encode(model, database_images), database_labels, ks=(k,))
        row = report.at_k.iloc[0]
        return {f"val_accuracy@{k}": row["accuracy"], f"val_precision@{k}": row["precision"],
                "val_map": report.map_all}

    return callback


def hamming_pr_by_radius(distances: np.ndarray, query_labels, db_labels, *, n_bits: int) -> pd.DataFrame:
    """Precision and recall of the items within Hamming radius ``r``, for r = 0..n_bits.

    The hashing literature's "Hamming lookup" precision-recall curve (notebook
    03): for each query, the database items at distance <= r are retrieved;
    precision = relevant retrieved / retrieved (0 when nothing is retrieved,
    the convention of ``metrics.precision_within_radius``), recall = relevant
    retrieved / all relevant. Means over queries. Computed from per-query
    histograms, no sort.
    """
    d = np.asarray(distances)
    rel = metrics.relevance_matrix(np.asarray(query_labels), np.asarray(db_labels))
    n_q, levels = len(d), n_bits + 1
    offsets = (np.arange(n_q) * levels)[:, None]
    hist_all = np.bincount((d.astype(np.int64) + offsets).ravel(), minlength=n_q * levels)
    hist_rel = np.bincount((d.astype(np.int64) + offsets)[rel], minlength=n_q * levels)
    retrieved = hist_all.reshape(n_q, levels).cumsum(axis=1)
    hits = hist_rel.reshape(n_q, levels).cumsum(axis=1)
    n_rel = rel.sum(axis=1, keepdims=True)
    precision = np.divide(hits, retrieved, out=np.zeros(hits.shape), where=retrieved > 0)
    recall = np.divide(hits, n_rel, out=np.zeros(hits.shape), where=n_rel > 0)
    return pd.DataFrame({"radius": np.arange(levels), "precision": precision.mean(axis=0),
                         "recall": recall.mean(axis=0)})


def evaluate_codes(query_packed: np.ndarray, db_packed: np.ndarray, query_labels, db_labels, *,
                   n_bits: int, ks=(1, 10, 100, 500, 1000, 2000, 5000), seed: int = 0) -> dict:
    """Score Hamming ranking of packed binary codes (notebooks 03 and 07).

    Returns a dict with:

    * ``mAP`` over the whole database, ``all_relevant``, with the *expected* AP
      over random orders of tied distances (``metrics``' ``ties="expected"``)
      and, for comparison, ``mAP_stable`` (ties in database order);
    * ``mAP@1000`` and ``mAP@5000``: ``normalize="retrieved"`` (DeepHash's
      ``CalcTopMap``), queries with no hit count 0, expected over ties;
    * ``precision@K`` for ``ks`` (stable ties) as a DataFrame ``pk``;
    * ``P@r<=2``: precision within Hamming radius 2 (0 for empty lookups);
    * ``R-precision`` (precision = recall = F1 at K = relevant count) and
      ``P@1`` (top-1 retrieval accuracy), stable ties;
    * ``pr``: :func:`hamming_pr_by_radius`;
    * ``search_ms``: Hamming distance computation + top-1000 per query, batched.
    """
    from . import hashing

    qlab, dblab = np.asarray(query_labels), np.asarray(db_labels)
    start = time.perf_counter()
    dist = hashing.hamming_distances(query_packed, db_packed)
    top = metrics.rank_by_distance(dist, k=min(1000, dist.shape[1]), ties="stable")
    search_ms = 1e3 * (time.perf_counter() - start) / len(dist)
    out = {"search_ms": search_ms}
    for name, kwargs in {"mAP": dict(normalize="all_relevant", ties="expected"),
                         "mAP_stable": dict(normalize="all_relevant", ties="stable"),
                         "mAP@1000": dict(normalize="retrieved", k=1000, ties="expected"),
                         "mAP@5000": dict(normalize="retrieved", k=5000, ties="expected")}.items():
        if "k" in kwargs and kwargs["k"] > dist.shape[1]:
            kwargs["k"] = dist.shape[1]
        out[name] = float(metrics.mean_average_precision_from_distances(dist, qlab, dblab, **kwargs))
    ks = [k for k in ks if k <= dist.shape[1]]
    ranking = metrics.rank_by_distance(dist, k=max(ks), ties="stable")
    rel = metrics.relevance_matrix(qlab, dblab, ranking)
    out["pk"] = pd.DataFrame({"K": ks, "precision": metrics.precision_at_ks(rel, ks).mean(axis=0)})
    within = metrics.precision_within_radius(dist, metrics.relevance_matrix(qlab, dblab), radius=2)
    out["P@r<=2"] = float(np.mean(within))
    n_rel = metrics.count_relevant(qlab, dblab)
    r_rank = metrics.rank_by_distance(dist, k=max(1, int(n_rel.max())), ties="stable")
    out["R-precision"] = float(np.mean(metrics.r_precision(
        metrics.relevance_matrix(qlab, dblab, r_rank), n_relevant=n_rel)))
    out["P@1"] = float(rel[:, 0].mean())
    out["pr"] = hamming_pr_by_radius(dist, qlab, dblab, n_bits=n_bits)
    return out

"""Pipelines: hashing sweep bookkeeping and split subsampling."""

import numpy as np
import pytest

from cbirlib import pipelines


def test_run_hashing_marks_impossible_bit_lengths_and_scores_the_rest():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 4
    labels = {role: rng.integers(0, 3, n) for role, n in (("train", 90), ("database", 120), ("query", 15))}
    feats = {role: centres[y] + rng.normal(size=(len(y), 8)) for role, y in labels.items()}
    methods = {k: pipelines.HASH_METHODS[k] for k in ("LSH", "ITQ")}
    table, full = pipelines.run_hashing({"toy": feats}, labels, bits=(8, 16), seed=0, epochs=1,
                                        methods=methods, progress=False)
    status = table.set_index(["method", "bits"])["status"]
    assert status[("ITQ", 16)].startswith("not applicable")
    assert status[("ITQ", 8)] == "ok" and status[("LSH", 16)] == "ok"
    assert ("toy", "ITQ", 16) not in full
    ok = table.loc[table["status"] == "ok"]
    assert (ok["mAP"] > 0.5).all(), "well-separated clusters must hash well"
    assert list(ok["bytes per image"]) == [1, 2, 1]


def test_retrieval_protocols_point_at_existing_split_protocols():
    from cbirlib import splits

    for dataset, spec in pipelines.RETRIEVAL_PROTOCOLS.items():
        proto = splits.PROTOCOLS[f"{dataset}__{spec['protocol']}"]
        roles = set(proto.roles)
        assert {spec["database_role"], spec["query_role"]} <= roles
        assert spec["val_role"] is None or spec["val_role"] in roles

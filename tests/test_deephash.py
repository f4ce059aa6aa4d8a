"""Tests for cbirlib.deephash: the survey's deep hashing heads, conventions, protocol sizes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cbirlib import claims as C
from cbirlib import deephash as DH
from cbirlib import hashing as H
from cbirlib import metrics as M
from cbirlib import splits

DEEP = ["DSH", "DPSH", "DHN", "HashNet", "DSDH", "GreedyHash (supervised)", "GreedyHash (unsupervised)", "ADSH"]


def clusters(*, n_per=40, n_classes=4, d=32, sep=3.0, noise=1.0, offset=1.0, seed=0):
    """Separable Gaussian classes, interleaved into a database (even rows) and queries (odd rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d)) * sep
    y = np.repeat(np.arange(n_classes), 2 * n_per)
    X = centres[y] + rng.normal(size=(y.size, d)) * noise + offset
    return X[::2], y[::2], X[1::2], y[1::2]


def code_map(q, db, yq, ydb):
    d = H.hamming_distances(H.pack_codes(q), H.pack_codes(db))
    return M.mean_average_precision_from_distances(d, yq, ydb, normalize="all_relevant", ties="expected").value


@pytest.fixture(scope="module")
def data():
    return clusters()


@pytest.fixture(scope="module")
def random_baseline(data):
    Xdb, ydb, Xq, yq = data
    rng = np.random.default_rng(1)
    vals = [code_map(rng.choice(np.int8([-1, 1]), (len(yq), 16)), rng.choice(np.int8([-1, 1]), (len(ydb), 16)),
                     yq, ydb) for _ in range(3)]
    return float(np.mean(vals))


def small(name, n_bits=16, seed=0, epochs=15, **kw):
    extra = dict(batch_size=32, lr=1e-2)
    if name == "ADSH":
        extra.update(n_sampled=100, inner_epochs=2)
    extra.update(kw)
    return DH.make_method(name, n_bits=n_bits, seed=seed, epochs=epochs, **extra)


@pytest.fixture(scope="module")
def fitted(data):
    Xdb, ydb, Xq, yq = data
    out = {}
    for name in DEEP:
        model = small(name)
        model.fit(Xdb, ydb if DH.METHODS[name][1] else None)
        out[name] = model
    return out


@pytest.mark.parametrize("name", DEEP)
def test_loss_decreases(fitted, name):
    hist = fitted[name].history_["total"]
    assert len(hist) == 15
    assert all(math.isfinite(v) for v in hist)
    assert hist[-1] < hist[0]


@pytest.mark.parametrize("name", DEEP)
def test_codes_are_pm1_and_better_than_random(fitted, data, random_baseline, name):
    Xdb, ydb, Xq, yq = data
    model = fitted[name]
    q, db = model.encode(Xq), model.encode(Xdb)
    assert q.dtype == np.int8 and q.shape == (len(yq), 16)
    assert set(np.unique(q)) <= {-1, 1}
    packed = model.encode_packed(Xq)
    assert packed.dtype == np.uint8 and packed.shape == (len(yq), 2)
    np.testing.assert_array_equal(H.unpack_codes(packed, 16), q)
    assert random_baseline < 0.4  # 4 classes: about 1/4
    assert code_map(q, db, yq, ydb) > random_baseline + 0.3


@pytest.mark.parametrize("name", ["DPSH", "HashNet", "ADSH", "GreedyHash (unsupervised)"])
def test_same_seed_same_codes(data, name):
    Xdb, ydb, Xq, yq = data
    lab = ydb if DH.METHODS[name][1] else None
    a = small(name, epochs=3).fit(Xdb, lab).encode(Xq)
    b = small(name, epochs=3).fit(Xdb, lab).encode(Xq)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", [n for n in DEEP if DH.METHODS[n][1]])
def test_supervised_methods_need_labels(data, name):
    with pytest.raises(ValueError, match="labels"):
        small(name, epochs=1).fit(data[0])


def test_adsh_asymmetric_codes(fitted, data, random_baseline):
    Xdb, ydb, Xq, yq = data
    model = fitted["ADSH"]
    V = model.codes_
    assert V.shape == (len(ydb), 16) and V.dtype == np.int8 and set(np.unique(V)) <= {-1, 1}
    # learned database codes of one class are close to each other
    assert code_map(model.encode(Xq), V, yq, ydb) > random_baseline + 0.3
    rows = np.full(len(ydb), -1)
    rows[:5] = [3, 2, 1, 0, 4]
    codes = model.database_codes(Xdb, trained_rows=rows)
    np.testing.assert_array_equal(codes[:5], V[[3, 2, 1, 0, 4]])
    np.testing.assert_array_equal(codes[5:], model.encode(Xdb[5:]))
    with pytest.raises(ValueError, match="trained_rows"):
        model.database_codes(Xdb, trained_rows=rows[:3])


def test_dsdh_codes_and_classifier(fitted, data):
    model = fitted["DSDH"]
    B = model.B_.numpy()
    assert set(np.unique(B)) <= {-1.0, 1.0}
    assert model.W_.shape == (16, 4)
    # the discrete codes classify the training labels through W
    pred = (model.B_ @ model.W_).argmax(dim=1).numpy()
    assert (pred == data[1]).mean() > 0.9


def test_hashnet_continuation_reaches_beta_max(fitted):
    model = fitted["HashNet"]
    assert model.step_ == model.total_steps_
    assert model.beta_ == pytest.approx(model.beta_max)
    assert model.alpha == pytest.approx(10 / 16)


def test_dsh_loss_by_hand():
    model = DH.DSH(n_bits=2, alpha=0.01)
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.5, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    terms = model._loss(None, z, y)
    # pairs (0,1): dissimilar, D=4, m=4 -> 0; (0,2): similar, D=0.25 -> 0.125; (1,2): dissimilar, D=4.25 -> 0
    assert float(terms["pair"]) == pytest.approx((0 + 0.125 + 0) / 3)
    # |b|-1 L1 per item: 0, 0, 0.5 -> mean 1/6, times 2 alpha
    assert float(terms["regulariser"]) == pytest.approx(2 * 0.01 * 0.5 / 3)


def test_greedy_sign_is_straight_through():
    z = torch.tensor([-0.3, 0.0, 2.0], requires_grad=True)
    h = DH._StraightThroughSign.apply(z)
    np.testing.assert_array_equal(h.detach().numpy(), [-1.0, 1.0, 1.0])
    (h * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), [1.0, 2.0, 3.0])


def test_dhn_log_cosh_is_stable():
    model = DH.DHN(n_bits=2, lam=1.0)
    z = torch.tensor([[100.0, -1.0], [0.0, 1.0]])
    y = torch.tensor([[1.0], [1.0]])
    q = float(model._loss(None, z, y)["quantization"])
    # log cosh(|z| - 1) for |z| - 1 = 99, 0, -1, 0; cosh(99) would be fine here but overflows for larger z
    vals = [99.0 - math.log(2.0), 0.0, math.log(math.cosh(1.0)), 0.0]
    assert q == pytest.approx(np.mean(vals), rel=1e-5)
    big = float(model._loss(None, torch.tensor([[1e4, 1.0], [1.0, 1.0]]), y)["quantization"])
    assert math.isfinite(big)


def test_parse_survey_column_and_rows():
    assert DH.parse_survey_column("Table II", "CIFAR-10 / 12 bits") == ("CIFAR-10", "mAP@5000", 12)
    assert DH.parse_survey_column("Table III", "CIFAR-10 / 64 bits") == ("CIFAR-10", "mAP@1000", 64)
    assert DH.parse_survey_column("Table IV", "CIFAR-10 / mAP@54000 / 16 bits") == ("CIFAR-10", "mAP@54000", 16)
    assert DH.parse_survey_column("Table IV", "CIFAR-10 / mAP@All / 24 bits") == ("CIFAR-10", "mAP@All", 24)
    with pytest.raises(ValueError):
        DH.parse_survey_column("Table II", "CIFAR-10 at 12 bits")
    survey = C.load_claims("p004")
    for table, col in zip(survey["table"], survey["column"]):
        dataset, metric, bits = DH.parse_survey_column(table, col)
        assert metric in DH.SURVEY_PROTOCOLS and bits in (12, 16, 24, 32, 48, 64)
    cifar_rows = set(survey.loc[survey["dataset"] == "CIFAR-10", "row"])
    assert set(DH.SURVEY_ROWS) <= cifar_rows
    assert set(DH.SURVEY_ROWS.values()) <= set(DH.METHODS)


def test_scaled_k():
    assert DH.scaled_k(5000, n_database=5000, n_database_full=59000) == 424
    assert DH.scaled_k(5000, n_database=59000, n_database_full=59000) == 5000
    assert DH.scaled_k(54000, n_database=54000, n_database_full=54000) == 54000
    assert DH.scaled_k(1, n_database=10, n_database_full=1000) == 1
    assert DH.scaled_k(None, n_database=10, n_database_full=1000) is None


def test_conventions_bracket_and_agree_without_ties():
    rng = np.random.default_rng(0)
    yq, ydb = rng.integers(0, 3, 20), rng.integers(0, 3, 60)
    dist = rng.integers(0, 5, (20, 60))  # many ties
    tab = DH.map_conventions(dist, yq, ydb, k=10, seed=0)
    assert len(tab) == 6
    assert (tab["best"] >= tab["expected"] - 1e-12).all() and (tab["expected"] >= tab["worst"] - 1e-12).all()
    assert (tab["best"] > tab["worst"]).any()
    distinct = rng.permutation(20 * 60).reshape(20, 60).astype(float)  # no ties
    tab2 = DH.map_conventions(distinct, yq, ydb, k=10, seed=0)
    for col in ("random", "expected", "best", "worst"):
        np.testing.assert_allclose(tab2[col], tab2["stable"], atol=1e-12)
    ct = DH.convention_table(dist, yq, ydb, ks=(10, None))
    assert list(ct["K"].unique()) == ["10", "All"] and (ct["spread"] >= 0).all()


def test_run_survey_methods_rows(data):
    Xdb, ydb, Xq, yq = data
    feats = {"train": Xdb, "database": Xdb, "query": Xq}
    labs = {"train": ydb, "database": ydb, "query": yq}
    res, full = DH.run_survey_methods(feats, labs, methods=["LSH", "DPSH", "ADSH"], bits=[8, 16], seed=0, epochs=2,
                                      n_database_full=len(ydb) * 10, ks={"mAP@50": 50, "mAP@All": None},
                                      trained_rows=np.arange(len(ydb)), progress=False,
                                      method_kwargs={"ADSH": {"n_sampled": 50}})
    assert len(res) == 6 and set(res["bits"]) == {8, 16}
    assert (res["K used (mAP@50)"] == 5).all() and (res["K used (mAP@All)"] == len(ydb)).all()
    assert res["mAP@All"].between(0, 1).all()
    np.testing.assert_array_equal(full[("ADSH", 16)]["db"], full[("ADSH", 16)]["db"])
    assert full[("ADSH", 8)]["db"].shape == (len(ydb), 8)
    assert set(res["trained on"]) == {"train"}


def test_adsh_trained_on_database_uses_learned_codes(data):
    Xdb, ydb, Xq, yq = data
    Xtr, ytr = Xq[:20], yq[:20]  # a small, different training set: must be ignored
    feats = {"train": Xtr, "database": Xdb, "query": Xq}
    labs = {"train": ytr, "database": ydb, "query": yq}
    res, full = DH.run_survey_methods(feats, labs, methods=["ADSH (database as training set)"], bits=[16], seed=0,
                                      epochs=3, n_database_full=len(ydb), ks={"mAP@All": None}, progress=False,
                                      method_kwargs={"ADSH (database as training set)": {"n_sampled": 60, "lr": 1e-2}})
    assert res.loc[0, "trained on"] == "database" and res.loc[0, "training images"] == len(ydb)
    model = DH.make_method("ADSH (database as training set)", n_bits=16, seed=0, epochs=3, n_sampled=60, lr=1e-2)
    model.fit(Xdb, ydb)
    np.testing.assert_array_equal(full[("ADSH (database as training set)", 16)]["db"], model.codes_)
    with pytest.raises(ValueError, match="train_on"):
        DH.ADSH(n_bits=8, train_on="query")


@pytest.mark.parametrize("protocol, counts", [
    ("cifar10", {"query": 1000, "train": 5000, "database": 54000}),
    ("cifar10-1", {"query": 1000, "train": 5000, "database": 59000}),
    ("cifar10-2", {"query": 10000, "train": 50000, "database": 50000}),
])
def test_protocol_sizes_match_split_files(protocol, counts):
    table = splits.load_split("cifar10", protocol)
    got = table["role"].value_counts().to_dict()
    assert got == counts
    manifest = splits.read_manifest()["files"][f"cifar10__{protocol}.csv"]["roles"]
    assert manifest == counts
    q = set(splits.role_frame(table, "query")["path"])
    db = set(splits.role_frame(table, "database")["path"])
    tr = set(splits.role_frame(table, "train")["path"])
    assert not q & db and not q & tr
    if protocol == "cifar10":
        assert not tr & db
    else:
        assert tr <= db
    # 100 queries per class (cifar10, cifar10-1) / the whole test set (cifar10-2)
    per_class = splits.role_frame(table, "query")["label"].value_counts()
    assert (per_class == counts["query"] // 10).all()


def test_survey_comparison_reasons_and_values():
    survey = C.load_claims("p004")
    results = pd.DataFrame([
        {"protocol": "cifar10-1", "method": "DPSH", "bits": 12, "mAP@5000": 0.5, "K used (mAP@5000)": 424,
         "mAP@All": 0.4, "K used (mAP@All)": 5000},
        {"protocol": "cifar10", "method": "HashNet", "bits": 16, "mAP@54000": 0.3, "K used (mAP@54000)": 5000},
    ])
    comp = DH.survey_comparison(survey, results, dataset_run="cifar10", stand_in="toy")
    assert len(comp) == len(survey) and comp["reason"].str.len().gt(0).all()
    dpsh = comp.loc[(comp["table"] == "Table II") & (comp["row"] == "DPSH’16") & (comp["bits"] == 12)].iloc[0]
    assert dpsh["ours"] == pytest.approx(50.0) and dpsh["difference"] == pytest.approx(50.0 - 68.2)
    assert dpsh["protocol"] == "cifar10__cifar10-1" and "K = 424" in dpsh["convention"]
    assert dpsh["reason"].startswith("stand-in: toy")
    hn = comp.loc[(comp["row"] == "HashNet’17") & (comp["column"] == "CIFAR-10 / mAP@54000 / 16 bits")].iloc[0]
    assert hn["ours"] == pytest.approx(30.0) and hn["protocol"] == "cifar10__cifar10"
    # an implemented method at a code length we did not run
    assert comp.loc[(comp["row"] == "DPSH’16") & (comp["table"] == "Table II") & (comp["bits"] == 24),
                    "reason"].iloc[0].startswith("not run in this profile")
    assert comp.loc[comp["dataset"] == "NUS-WIDE", "reason"].str.contains("not available here").all()
    assert comp.loc[comp["dataset"] == "NUS-WIDE", "ours"].isna().all()
    assert comp.loc[comp["row"] == "DQN’16", "reason"].str.contains("not implemented").all()
    # another dataset (the smoke profile's digits): no values at all
    smoke = DH.survey_comparison(survey, results, dataset_run="digits", stand_in="toy")
    assert smoke["ours"].isna().all()


@pytest.mark.parametrize("name", ["DPSH", "DSH", "ADSH"])
def test_end_to_end_trunk_is_trained_with_the_head(data, name):
    """With ``trunk``, raw inputs go through a trainable module; its BatchNorm keeps eval mode."""
    Xdb, ydb, Xq, yq = data
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(Xdb.shape[1], 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU())
    before = [p.detach().clone() for p in trunk.parameters()]
    stats = trunk[1].running_mean.clone()
    model = DH.make_method(name, n_bits=16, seed=0, epochs=15, trunk=trunk, chunk=7)
    model.fit(Xdb.astype(np.float32), ydb)
    assert any(not torch.equal(a, b) for a, b in zip(before, trunk.parameters()))
    assert torch.equal(trunk[1].running_mean, stats)
    assert model.opt_.param_groups[1]["lr"] == pytest.approx(model.lr / 10)
    q, db = model.encode(Xq.astype(np.float32)), model.encode(Xdb.astype(np.float32))
    assert q.shape == (len(Xq), 16) and set(np.unique(q)) <= {-1, 1}
    rng = np.random.default_rng(0)
    random_map = code_map(rng.choice([-1, 1], q.shape), rng.choice([-1, 1], db.shape), yq, ydb)
    assert code_map(q, db, yq, ydb) > random_map + 0.2


def test_image_trunk_maps_uint8_images_to_backbone_features():
    from cbirlib import backbones

    if "mobilenet_v2" not in backbones.available_backbones():
        pytest.skip("MobileNetV2 weights not installed")
    b = backbones.load_backbone("mobilenet_v2", input_size=32)
    trunk = DH.image_trunk(b)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 40, 40, 3), dtype=np.uint8)
    out = trunk.eval()(torch.as_tensor(images))
    assert out.shape == (3, b.feature_dim("penultimate"))
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in b.model.parameters())


def test_run_survey_methods_end_to_end_uses_inputs_for_deep_heads_only(data):
    """Deep heads get a fresh trunk and the raw inputs; LSH / ITQ keep the features."""
    Xdb, ydb, Xq, yq = data
    made = []

    def factory():
        made.append(torch.nn.Sequential(torch.nn.Linear(Xdb.shape[1], 12), torch.nn.ReLU()))
        return made[-1]

    feats = {"train": Xdb[:, :8], "database": Xdb[:, :8], "query": Xq[:, :8]}
    raw = {"train": Xdb.astype(np.float32), "database": Xdb.astype(np.float32), "query": Xq.astype(np.float32)}
    labels = {"train": ydb, "database": ydb, "query": yq}
    res, full = DH.run_survey_methods(feats, labels, methods=["LSH", "DPSH"], bits=[8], seed=0, epochs=3,
                                      n_database_full=len(ydb), ks={"mAP@All": None}, inputs=raw,
                                      trunk_factory=factory, progress=False)
    assert len(made) == 1 and list(res["method"]) == ["LSH", "DPSH"]
    assert full[("DPSH", 8)]["q"].shape == (len(yq), 8)
    with pytest.raises(ValueError, match="raw inputs"):
        DH.run_survey_methods(feats, labels, methods=["DPSH"], bits=[8], seed=0, epochs=1,
                              n_database_full=len(ydb), ks={"mAP@All": None}, trunk_factory=factory,
                              progress=False)

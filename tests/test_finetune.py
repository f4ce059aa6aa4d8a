"""Tests for cbirlib.finetune and notebook 06's retrieval scoring (cbirlib.pipelines).

Offline and small: EfficientNet-Lite0 / MobileNetV2 from their pip packages at
32-64 pixel inputs, torchvision's EfficientNets built without weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cbirlib import backbones as B
from cbirlib import finetune as F
from cbirlib import metrics, pipelines

AVAILABLE = B.available_backbones()


def needs(name):
    return pytest.mark.skipif(name not in AVAILABLE, reason=f"weights for {name} not installed")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def lite0_small():
    if "efficientnet_lite0" not in AVAILABLE:
        pytest.skip("EfficientNet-Lite0 weights not installed")
    return B.load_backbone("efficientnet_lite0", input_size=48, resize="squash")


def _images(n, size, seed=0):
    """Noisy images of two "classes": reddish (0) and bluish (1), so the task is learnable."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    noise = rng.normal(0, 40, size=(n, size, size, 3))
    tint = np.where(labels[:, None] == 0, [[170, 90, 80]], [[80, 100, 170]])
    out = noise + tint[:, None, None, :]
    return np.clip(out, 0, 255).astype(np.uint8), labels


# --------------------------------------------------------------------------
# "the top 80 layers"
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name,total", [("efficientnet_b0", 238), ("mobilenet_v2", 154),
                                        ("efficientnet_lite0", 156)])
def test_keras_layer_counts(name, total):
    # Keras: len(EfficientNetB0(include_top=False).layers) == 238 (TF >= 2.10, with the
    # second Rescaling layer), len(MobileNetV2(include_top=False).layers) == 154 (the
    # TensorFlow transfer-learning tutorial's "Number of layers in the base model").
    # Lite0 = B0 without the 5 SE layers per block (16 blocks) and with 1 preprocessing
    # layer instead of 3: 238 - 80 - 2 = 156.
    b = B.load_backbone(name, pretrained=False)
    layers = F.keras_layers(b)
    assert len(layers) == total
    names = [layer.name for layer in layers]
    assert len(set(names)) == len(names)
    owned = [p for layer in layers for p in layer.params]
    assert len(owned) == len(set(owned)), "a parameter belongs to two Keras layers"
    classifier = set(dict(b.model.named_parameters())) - set(owned)
    assert classifier and all(p.startswith(("_fc.", "classifier.")) for p in classifier)
    assert names[-3:] in (["top_conv", "top_bn", "top_activation"],
                          ["Conv_1", "Conv_1_bn", "out_relu"])


def test_top80_plans_match_hand_count():
    # B0 from the top: top (3) + block7a (13) + block6a-d (14 + 3 x 15) = 75, then the last
    # 5 layers of block5c: se_excite, project_conv, project_bn, drop, add.
    b0 = F.unfreeze_plan(B.load_backbone("efficientnet_b0", pretrained=False), 80)
    assert b0.first_layer == "block5c_se_excite" and b0.n_layers == 238
    assert b0.cut_after == "features.4"  # torchvision segments are whole stages
    assert all(p.startswith(("features.5.2.block.3", "features.6", "features.7", "features.8"))
               for p in b0.trainable)
    # Lite0: top (3) + block7a (8) + block6a-d (9 + 3 x 10) + block5a-c (8 + 2 x 10) = 78,
    # then block4c's drop and add (weightless): every weight of blocks 5a.. trains.
    lite = B.load_backbone("efficientnet_lite0", pretrained=False)
    plan = F.unfreeze_plan(lite, 80)
    assert plan.first_layer == "block4c_drop"
    assert plan.cut_after == "_blocks.7" and lite._segments[plan.cut][0] == "_blocks.8"
    blocks = {int(p.split(".")[1]) for p in plan.trainable if p.startswith("_blocks.")}
    assert blocks == set(range(8, 16))
    assert {p.split(".")[0] for p in plan.trainable} == {"_blocks", "_conv_head", "_bn1"}
    # MobileNetV2: Conv_1 (3) + block_16 (8) + blocks 10-15 (8 + 5 x 9) + block_9 (9) = 73,
    # then 7 of block_8's 9 layers: from block_8_expand_relu (its conv + BN stay frozen).
    mb = B.load_backbone("mobilenet_v2", pretrained=False)
    plan = F.unfreeze_plan(mb, 80)
    assert plan.first_layer == "block_8_expand_relu" and plan.cut_after == "features.8"
    assert not any(p.startswith("features.9.conv.0.") for p in plan.trainable)
    assert any(p.startswith("features.9.conv.1.") for p in plan.trainable)
    none = F.unfreeze_plan(mb, 0)
    assert none.trainable == () and none.n_trainable_params == 0
    with pytest.raises(ValueError, match="n_top"):
        F.unfreeze_plan(mb, 1000)


# --------------------------------------------------------------------------
# cached lower stages == the whole network
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in ("efficientnet_lite0", "mobilenet_v2")
                                  if n in AVAILABLE])
def test_cached_lower_path_equals_full_network(name):
    b = B.load_backbone(name, input_size=64, resize="squash")
    images, _ = _images(6, 64)
    plan = F.unfreeze_plan(b, 80)
    lower = F.lower_outputs(b, images, cut=plan.cut, batch_size=4, progress=False)
    assert lower.shape[0] == 6 and lower.ndim == 4
    again = F.lower_outputs(b, images, cut=plan.cut, batch_size=4, progress=False)  # cache hit
    torch.testing.assert_close(again, lower, atol=0, rtol=0)
    ours = F.upper_features(b, lower, cut=plan.cut, stages=("block6", "block7", "penultimate"))
    ref = B.extract_features(b, images, stage=("block6", "block7", "penultimate"),
                             batch_size=4, progress=False)
    dims = B.PAPER_BLOCKS[name]
    assert ours["block6"].shape == (6, dims["block6"].channels)
    assert ours["block7"].shape == (6, dims["block7"].channels)
    for s in ref:
        np.testing.assert_allclose(ours[s], ref[s], rtol=1e-4, atol=1e-5, err_msg=s)
    with pytest.raises(ValueError, match="below the cached cut"):
        F.upper_features(b, lower, cut=plan.cut, stages="block3")


# --------------------------------------------------------------------------
# fine-tuning
# --------------------------------------------------------------------------


def _train_loss(result, lower, labels):
    with torch.no_grad():
        feats = F.upper_features(result.backbone, lower, cut=result.plan.cut,
                                 stages="penultimate")["penultimate"]
        logits = result.head(torch.from_numpy(feats))
        return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels)))


def test_fine_tuning_lowers_the_loss_and_trains_only_the_top(lite0_small):
    b = lite0_small
    images, labels = _images(16, 48)
    plan = F.unfreeze_plan(b, 80)
    lower = F.lower_outputs(b, images, cut=plan.cut, progress=False)
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    head_only = F.fine_tune(b, lower, labels, n_classes=2, progress=False,
                            config=F.FineTuneConfig(phase1_epochs=2, phase2_epochs=0))
    both = F.fine_tune(b, lower, labels, n_classes=2, progress=False,
                       config=F.FineTuneConfig(phase1_epochs=2, phase2_epochs=2,
                                               phase2_lr=1e-4))
    # phase I: the loss falls over epochs; phase II lowers it further
    h = both.history
    assert list(h["phase"]) == ["I", "I", "II", "II"]
    assert h["loss"].iloc[1] < h["loss"].iloc[0]
    assert _train_loss(both, lower, labels) < _train_loss(head_only, lower, labels)
    # the backbone passed in is untouched; the copy changed exactly the unfrozen weights
    for k, v in b.model.state_dict().items():
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)
    tuned = dict(both.backbone.model.named_parameters())
    changed = {n for n, p in tuned.items() if not torch.equal(p, before[n])}
    assert changed and changed <= set(plan.trainable)
    buffers = dict(both.backbone.model.named_buffers())
    assert all(torch.equal(v, before[k]) for k, v in buffers.items())  # BN statistics frozen
    assert not any(p.requires_grad for p in both.backbone.model.parameters())


def test_fine_tuning_is_deterministic_and_cached(lite0_small):
    b = lite0_small
    images, labels = _images(8, 48, seed=1)
    plan = F.unfreeze_plan(b, 80)
    lower = F.lower_outputs(b, images, cut=plan.cut, progress=False)
    cfg = F.FineTuneConfig(phase1_epochs=1, phase2_epochs=1, seed=3)
    first = F.fine_tune(b, lower, labels, n_classes=2, config=cfg, cache=False, progress=False)
    second = F.fine_tune(b, lower, labels, n_classes=2, config=cfg, progress=False)
    cached = F.fine_tune(b, lower, labels, n_classes=2, config=cfg, progress=False)
    assert not second.from_cache and cached.from_cache and cached.key == second.key
    for r in (second, cached):
        for (n, p), q in zip(first.backbone.model.named_parameters(),
                             r.backbone.model.parameters()):
            torch.testing.assert_close(p, q, atol=0, rtol=0, msg=n)
        torch.testing.assert_close(r.head.weight, first.head.weight, atol=0, rtol=0)
    pd.testing.assert_frame_equal(cached.history.drop(columns="seconds"),
                                  second.history.drop(columns="seconds"))
    other = F.fine_tune(b, lower, labels, n_classes=2, progress=False,
                        config=F.FineTuneConfig(phase1_epochs=1, phase2_epochs=1, seed=4))
    assert other.key != second.key
    assert not torch.equal(other.head.weight, second.head.weight)
    with pytest.raises(ValueError, match="labels"):
        F.fine_tune(b, lower, labels + 5, n_classes=2, config=cfg, progress=False)


# --------------------------------------------------------------------------
# cosine retrieval and paper 003's scores
# --------------------------------------------------------------------------


def test_cosine_ranking_equals_l2_ranking_on_normalised_vectors():
    rng = np.random.default_rng(0)
    q, db = rng.normal(size=(7, 24)) * 5, rng.normal(size=(60, 24)) * rng.uniform(0.1, 9, (60, 1))
    cos = F.cosine_distances(q, db)
    qn, dbn = F.l2_normalize(q), F.l2_normalize(db)
    np.testing.assert_allclose(np.linalg.norm(dbn, axis=1), 1, rtol=1e-6)
    l2 = np.sqrt(((qn[:, None, :].astype(np.float64) - dbn[None]) ** 2).sum(-1))
    np.testing.assert_allclose(l2 ** 2, 2 * cos, atol=1e-6)  # |q - s|^2 = 2 (1 - cos)
    np.testing.assert_array_equal(metrics.rank_by_distance(cos), metrics.rank_by_distance(l2))
    # without normalisation Euclidean ranking differs (the magnitudes vary 90-fold)
    raw = np.sqrt(((q[:, None, :] - db[None]) ** 2).sum(-1))
    assert not np.array_equal(metrics.rank_by_distance(cos), metrics.rank_by_distance(raw))
    assert np.all(F.l2_normalize(np.zeros((2, 3))) == 0)


def test_scores_by_hand():
    # one query of class 0; database ordered by cosine distance: R N R N N (2-D vectors at
    # increasing angles), 2 relevant items in the database
    angles = np.deg2rad([0, 10, 20, 30, 40])
    db = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    db_labels = np.array([0, 1, 0, 1, 1])
    summary, per_query = pipelines.cosine_retrieval_scores(
        np.array([[1.0, 0.0]]), [0], db, db_labels, ks=(1, 2, 4), map_ks=(2, 4))
    assert summary["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert summary["P@2"] == pytest.approx(0.5) and summary["R@2"] == pytest.approx(0.5)
    assert summary["R@4"] == pytest.approx(1.0) and summary["P@4"] == pytest.approx(0.5)
    assert summary["mAP@2"] == pytest.approx(1 / 2)                 # (P@1) / min(2, 2)
    assert summary["mAP@4"] == pytest.approx((1 + 2 / 3) / 2)       # / min(4, 2)
    assert summary["mAP@2 (retrieved)"] == pytest.approx(1.0)       # / hits in top 2
    assert summary["relevant per query"] == 2 and summary["database"] == 5
    assert list(per_query["label"]) == [0]


def test_excluding_the_query_equals_removing_it():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(40, 8))
    labels = np.arange(40) % 4
    queries = np.array([3, 10, 25])
    ours, _ = pipelines.cosine_retrieval_scores(feats[queries], labels[queries], feats,
                                                labels, exclude=queries, ks=(5, 10),
                                                map_ks=(5, 10))
    ref_rows = []
    for q in queries:
        keep = np.delete(np.arange(40), q)
        s, _ = pipelines.cosine_retrieval_scores(feats[[q]], labels[[q]], feats[keep],
                                                 labels[keep], ks=(5, 10), map_ks=(5, 10))
        ref_rows.append(s)
    ref = pd.DataFrame(ref_rows).mean()
    for k, v in ours.items():
        assert v == pytest.approx(ref[k]), k
    assert ours["relevant per query"] == 9 and ours["database"] == 39
    # with the query kept in the database it ranks first: P@1 = 1 and one more relevant
    kept, _ = pipelines.cosine_retrieval_scores(feats[queries], labels[queries], feats, labels,
                                                ks=(1,), map_ks=(1,))
    assert kept["P@1"] == 1 and kept["relevant per query"] == 10


def test_mean_std_table_uses_sample_std():
    scores = pd.DataFrame({"model": ["a"] * 3 + ["b"], "seed": [0, 1, 2, 0],
                           "mAP": [0.5, 0.7, 0.9, 0.4]})
    t = pipelines.mean_std_table(scores, by=["model"], metrics_cols=["mAP"])
    assert list(t.columns) == ["model", "seeds", "mAP", "mAP std"]
    assert t["mAP"].tolist() == pytest.approx([0.7, 0.4])
    assert t["mAP std"].tolist() == pytest.approx([0.2, 0.0])
    assert t["seeds"].tolist() == [3, 1]


def test_search_time_reports_dimensions():
    rng = np.random.default_rng(0)
    out = pipelines.cosine_search_time(rng.normal(size=(5, 16)), rng.normal(size=(30, 16)),
                                       k=10, database_size=100, repeats=2)
    assert out["database"] == 100 and out["dim"] == 16 and out["bytes_per_image"] == 64
    assert out["search_ms"] == pytest.approx(out["product_ms"] + out["select_ms"])
    assert out["product_ms"] > 0 and out["select_ms"] > 0

"""Tests for cbirlib.inpainting (region-wise convolution, two-stage network, losses,
training, baselines) and notebook 05's retrieval helpers in cbirlib.pipelines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cbirlib import inpainting as I
from cbirlib import masks as K
from cbirlib import pipelines


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth_images(n, size, seed=0):
    """Smooth colour images (low-frequency sinusoids): inpaintable from their kept pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        for c in range(3):
            a, b, ph = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 2 * np.pi)
            out[i, ..., c] = np.rint(127.5 + 100 * np.sin(2 * np.pi * (a * xx + b * yy) + ph))
    return out


# --------------------------------------------------------------------------
# region-wise convolution
# --------------------------------------------------------------------------


def test_region_mask_min_pools_and_upsamples():
    m = torch.ones(1, 1, 4, 4)
    m[0, 0, 0, 1] = 0  # one missing pixel in the top-left 2x2 cell
    down = I.region_mask(m, (2, 2))
    assert down[0, 0].tolist() == [[0, 1], [1, 1]]
    assert I.region_mask(m, (4, 4)) is m
    up = I.region_mask(down, (4, 4))
    assert up[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]
    with pytest.raises(ValueError):
        I.region_mask(torch.ones(1, 1, 5, 5), (2, 2))


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
def test_region_conv_missing_weights_change_only_missing_outputs(stride, dilation):
    torch.manual_seed(0)
    conv = I.RegionConv2d(3, 5, 3, stride=stride, dilation=dilation)
    x = torch.randn(2, 3, 16, 16)
    m = torch.from_numpy(K.fringe_mask(16, 16, frequency=2).astype(np.float32))[None, None].repeat(2, 1, 1, 1)
    y0, region = conv(x, m)
    assert y0.shape == (2, 5, 16 // stride, 16 // stride)
    assert 0 < region.mean() < 1
    with torch.no_grad():
        conv.missing.weight.add_(torch.randn_like(conv.missing.weight))
        conv.missing.bias.add_(1.0)
    y1, _ = conv(x, m)
    kept = region.expand_as(y0).bool()
    assert torch.equal(y1[kept], y0[kept])  # existing positions: bit-identical
    assert (y1[~kept] != y0[~kept]).all()  # every missing position changed
    # and the existing-region weights only affect existing positions
    with torch.no_grad():
        conv.known.weight.mul_(-2.0)
    y2, _ = conv(x, m)
    assert torch.equal(y2[~kept], y1[~kept])
    assert (y2[kept] != y1[kept]).any()


def test_region_conv_equals_one_conv_when_nothing_is_missing():
    torch.manual_seed(1)
    conv = I.RegionConv2d(2, 4, 5)
    x = torch.randn(1, 2, 12, 12)
    y, _ = conv(x, torch.ones(1, 1, 12, 12))
    assert torch.allclose(y, conv.known(x))
    y, _ = conv(x, torch.zeros(1, 1, 12, 12))
    assert torch.allclose(y, conv.missing(x))
    with pytest.raises(ValueError):
        I.RegionConv2d(2, 4, 4)


# --------------------------------------------------------------------------
# non-local block and the generator
# --------------------------------------------------------------------------


def test_nonlocal_starts_as_identity_and_is_global():
    torch.manual_seed(0)
    block = I.NonLocalBlock(8)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x), x)
    assert block.attention.shape == (2, 36, 36)
    assert torch.allclose(block.attention.sum(-1), torch.ones(2, 36))
    torch.nn.init.normal_(block.out.weight)
    # a change at one corner reaches the opposite corner (a 1x1-conv stack could not)
    x2 = x.clone()
    x2[:, :, 0, 0] += 5.0
    assert (block(x2)[:, :, 5, 5] != block(x)[:, :, 5, 5]).all()


def test_generator_shapes_composites_and_stage2_sees_composite():
    torch.manual_seed(0)
    net = I.TwoStageInpainter(I.InpaintConfig(image_size=16, width=4))
    x = torch.rand(3, 3, 16, 16)
    m = torch.from_numpy(K.fringe_mask(16, 16, frequency=3).astype(np.float32))[None, None].repeat(3, 1, 1, 1)
    i1, c1, i2, c2 = net(x, m)
    for t in (i1, c1, i2, c2):
        assert t.shape == x.shape and t.min() >= 0 and t.max() <= 1
    kept = m.expand_as(x).bool()
    assert torch.equal(c1[kept], x[kept]) and torch.equal(c2[kept], x[kept])
    assert torch.equal(c1[~kept], i1[~kept]) and torch.equal(c2[~kept], i2[~kept])
    # the missing pixels of x never reach the output
    x_other = x.clone()
    x_other[~kept] = torch.rand(int((~kept).sum()))
    assert torch.equal(net(x_other, m)[3], c2)
    # stage 2 works on the composite of stage 1: changing stage 1 changes stage 2
    with torch.no_grad():
        net.s1_out.bias.add_(1.0)
    assert not torch.equal(net(x, m)[2], i2)
    with pytest.raises(ValueError):
        I.InpaintConfig(image_size=18)


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------


def test_reconstruction_loss_both_stages_and_hole_weight():
    x = torch.zeros(1, 3, 4, 4)
    m = torch.ones(1, 1, 4, 4)
    m[..., :2] = 0  # left half missing
    i1 = torch.full_like(x, 0.5)
    i2 = torch.zeros_like(x)
    i2[..., :2] = 1.0  # stage 2 wrong only in the hole
    loss = I.InpaintLoss(None)
    total, parts = loss((i1, None, i2, None), x, m)
    assert parts["rec"] == pytest.approx(0.5 + 0.5)
    loss = I.InpaintLoss(None, hole_weight=3.0)
    _, parts = loss((i1, None, i2, None), x, m)
    assert parts["rec"] == pytest.approx(0.5 + 3 * 8 * 3 / ((3 * 8 + 8) * 3))
    assert set(parts) == {"rec", "total"}


def test_style_and_correlation_terms_vanish_at_the_target():
    from cbirlib.backbones import load_backbone

    backbone = load_backbone("mobilenet_v2", input_size=32, channels_last=False)
    loss = I.InpaintLoss(backbone, style_stages=("block1", "block2"), correlation_stage="block2")
    assert not any(p.requires_grad for p in backbone.model.parameters())
    x = torch.rand(2, 3, 32, 32)
    m = torch.ones(2, 1, 32, 32)
    _, parts = loss((x, x, x, x), x, m)
    assert parts["rec"] == 0 and parts["cor"] == pytest.approx(0, abs=1e-6) and parts["style"] == pytest.approx(0, abs=1e-9)
    y = torch.rand(2, 3, 32, 32)
    total, parts = loss((y, y, y, y), x, m)
    assert parts["cor"] > 0 and parts["style"] > 0
    assert parts["total"] == pytest.approx(parts["rec"] + 0.1 * parts["cor"] + 10 * parts["style"], rel=1e-5)
    # gradients reach the generated image through the frozen backbone
    y.requires_grad_(True)
    loss((y, y, y, y), x, m)[0].backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_gram_and_correlation_helpers():
    f = torch.arange(12.0).reshape(1, 2, 2, 3)
    flat = f.reshape(1, 2, 6)
    assert torch.allclose(I._gram(f), flat @ flat.transpose(1, 2) / 12)
    c = I._correlation(f)
    assert c.shape == (1, 6, 6)
    assert torch.allclose(torch.diagonal(c[0])[1:], torch.ones(5))  # unit vectors (position 0 is zero)


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------


def test_training_masks_deterministic_and_bool():
    a = I.training_masks(5, 32, seed=3)
    assert a.dtype == bool and a.shape == (5, 32, 32)
    assert np.array_equal(a, I.training_masks(5, 32, seed=3))
    assert not np.array_equal(a, I.training_masks(5, 32, seed=4))
    assert all(0 < K.masked_fraction(m) < 1 for m in a)


def test_loss_decreases_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_CACHE", str(tmp_path))
    images = smooth_images(24, 16)
    cfg = I.InpaintConfig(image_size=16, width=4)
    train = I.InpaintTrainConfig(steps=60, batch_size=8, lr=3e-3, n_masks=50, loss_backbone="", log_every=10)
    res = I.train_inpainter(cfg, images[:20], images[20:], train=train, progress=False)
    h = res.history
    assert not res.from_cache and list(h["step"]) == [10, 20, 30, 40, 50, 60]
    assert h["total"].iloc[-1] < 0.8 * h["total"].iloc[0]
    assert h["val_l1_hole"].iloc[-1] < h["val_l1_hole"].iloc[0]
    again = I.train_inpainter(cfg, images[:20], images[20:], train=train, progress=False, cache=False)
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    cached = I.train_inpainter(cfg, images[:20], images[20:], train=train, progress=False)
    assert cached.from_cache and cached.cache_key == res.cache_key
    pd.testing.assert_frame_equal(cached.history, res.history, check_exact=False, rtol=1e-12)
    assert all(torch.equal(v, cached.model.state_dict()[k]) for k, v in res.model.state_dict().items())
    other = I.InpaintTrainConfig(steps=60, batch_size=8, lr=3e-3, n_masks=50, loss_backbone="", log_every=10,
                                 seed=1)
    assert I._cache_key(cfg, other, images[:20], images[20:]) != res.cache_key
    with pytest.raises(ValueError, match="expected uint8"):
        I.train_inpainter(cfg, images[:20, :8, :8], images[20:], train=train, progress=False)


# --------------------------------------------------------------------------
# inference and baselines
# --------------------------------------------------------------------------


def test_inpaint_keeps_known_pixels_and_ignores_hidden_ones():
    torch.manual_seed(0)
    net = I.TwoStageInpainter(I.InpaintConfig(image_size=16, width=4))
    images = smooth_images(3, 16)
    mask = K.fringe_mask(16, 16, frequency=2)
    out = I.inpaint(net, images, mask)
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.array_equal(out[:, mask], images[:, mask])
    tampered = images.copy()
    tampered[:, ~mask] = 0
    assert np.array_equal(I.inpaint(net, tampered, mask), out)
    assert np.array_equal(I.inpaint(net, images, mask, batch_size=1), out)
    s1 = I.inpaint(net, images, mask, stage=1)
    assert np.array_equal(s1[:, mask], images[:, mask])
    with pytest.raises(ValueError, match="True = kept"):
        I.inpaint(net, images, mask.astype(np.uint8))


def test_mean_fill_and_biharmonic():
    images = smooth_images(2, 32)
    mask = K.fringe_mask(32, 32, frequency=6)
    mean = I.mean_fill(images, mask)
    for im, out in zip(images, mean):
        assert np.array_equal(out[mask], im[mask])
        assert np.all(np.abs(out[~mask].astype(int) - np.rint(im[mask].mean(0)).astype(int)) == 0)
    bih = I.biharmonic_fill(images, mask)
    assert np.array_equal(bih[:, mask], images[:, mask])
    err = lambda r: np.abs(r[:, ~mask].astype(float) - images[:, ~mask]).mean()  # noqa: E731
    # thin stripes of a smooth image: biharmonic interpolation is far better than the mean
    assert err(bih) < 0.25 * err(mean)
    # a linear ramp is biharmonic: reconstructed to within 2% of its range
    ramp = np.repeat(np.linspace(20, 230, 32)[None, :, None], 32, 0).repeat(3, 2)[None].round().astype(np.uint8)
    assert np.abs(I.biharmonic_fill(ramp, mask).astype(int) - ramp).max() <= 4
    with pytest.raises(ValueError, match="hides every pixel"):
        I.biharmonic_fill(images, np.zeros((32, 32), bool))
    masked = I.reconstruct("masked", images, mask)
    assert (masked[:, ~mask] == 0).all() and np.array_equal(masked[:, mask], images[:, mask])
    assert np.array_equal(I.reconstruct("mean fill", images, mask), mean)
    with pytest.raises(ValueError, match="model="):
        I.reconstruct("two-stage network", images, mask)
    with pytest.raises(ValueError, match="unknown method"):
        I.reconstruct("telepathy", images, mask)


# --------------------------------------------------------------------------
# notebook 05 retrieval helpers (cbirlib.pipelines)
# --------------------------------------------------------------------------


def test_precision_top_k_hand_computed_with_junk():
    db = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    q = np.array([[0.1]])
    relevant = np.array([[False, True, False, True, False]])
    junk = np.array([[True, False, False, False, False]])  # the nearest is junk: removed
    res = pipelines.precision_top_k(q, db, relevant, junk, ks=(1, 2, 5))
    # ranking after junk removal: 1 (rel), 2, 3 (rel), 4, pad
    assert res["P@1"][0] == 1.0 and res["P@2"][0] == 0.5 and res["P@5"][0] == pytest.approx(0.4)
    # revisitop caps at the rank of the last relevant item once all are found (3)
    assert res["capped P@5"][0] == pytest.approx(2 / 3)
    assert res["capped P@2"][0] == 0.5
    no_junk = pipelines.precision_top_k(q, db, relevant, np.zeros_like(junk), ks=(1,))
    assert no_junk["P@1"][0] == 0.0


def test_summarize_precision_mean_and_std_over_phases():
    rows = []
    for phase, vals in ((0.0, [1.0, 0.0]), (0.5, [1.0, 1.0])):
        for qi, v in enumerate(vals):
            rows.append({"features": "f", "condition": "masked", "frequency_hz": 2.0, "phase": phase,
                         "query": qi, "P@1": v})
    rows += [{"features": "f", "condition": "original", "frequency_hz": np.nan, "phase": np.nan, "query": qi,
              "P@1": 1.0} for qi in range(2)]
    out = pipelines.summarize_precision(pd.DataFrame(rows)).set_index("condition")
    assert out.loc["masked", "P@1"] == pytest.approx(0.75)
    assert out.loc["masked", "P@1 std"] == pytest.approx(0.25)
    assert out.loc["masked", "n_phases"] == 2
    assert out.loc["original", "P@1"] == 1.0 and np.isnan(out.loc["original", "frequency_hz"])


class PixelFeatures:
    names = ["pixels"]

    def __call__(self, images):
        return {"pixels": images.reshape(len(images), -1).astype(np.float32) / 255}

    def cache_key(self):
        return {"pixels": True}


def test_masked_query_retrieval_and_quality_on_toy_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_CACHE", str(tmp_path))
    labels = np.arange(12) % 3
    noise = np.random.default_rng(0).integers(-3, 4, size=(12, 16, 16, 3))
    images = np.clip(smooth_images(3, 16)[labels] + noise, 0, 255).astype(np.uint8)  # 3 classes of near-copies
    relevant = labels[:4, None] == labels[None, :]
    junk = np.eye(4, 12, dtype=bool)  # each query's own image
    relevant &= ~junk
    extractors = PixelFeatures()
    per_query, imgs, db_feats = pipelines.masked_query_retrieval(
        images[:4], images, relevant, junk, extractors=extractors, frequencies=[1.0, 4.0], phases=[0.0],
        methods=("mean fill",), dataset="toy", progress=False)
    assert set(per_query["condition"]) == {"original", "masked", "mean fill"}
    assert len(per_query) == 4 * (1 + 2 * 2)
    assert ("mean fill", 4.0, 0.0) in imgs
    assert np.array_equal(db_feats["pixels"], extractors(images)["pixels"])
    orig = per_query.loc[per_query["condition"] == "original"]
    assert (orig["P@1"] == 1.0).all() and (orig["capped P@5"] == 1.0).all()  # near-copies rank first
    q = pipelines.inpainting_quality(images[:3], frequencies=[2.0], phases=[0.0], methods=("mean fill",),
                                     progress=False)
    assert len(q) == 2 * 3 and (q["masked_fraction"] == 0.5).all()
    by = q.groupby("method")["psnr"].mean()
    assert by["mean fill"] > by["masked"]  # filling with the mean beats leaving zeros
    assert (q["ssim"] <= 1).all() and (q["fsim"] <= 1).all()

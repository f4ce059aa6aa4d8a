"""Autoencoders: shapes, latent size, a training step lowers the loss, cache hits."""

import numpy as np
import pytest
import torch

from cbirlib import models


@pytest.mark.parametrize("kind", ["conv", "pool"])
@pytest.mark.parametrize("channels,size,widths", [(1, 32, (8, 16)), (3, 16, (4,)), (1, 64, (8, 8, 8))])
def test_shapes_and_latent_size(kind, channels, size, widths):
    cfg = models.AutoencoderConfig(kind=kind, in_channels=channels, image_size=size,
                                   latent_dim=7, widths=widths)
    model = models.build_autoencoder(cfg)
    x = torch.rand(5, channels, size, size)
    recon, z = model(x)
    assert recon.shape == x.shape and z.shape == (5, 7)
    assert float(recon.min()) >= 0 and float(recon.max()) <= 1


def test_paper001_defaults():
    cfg = models.AutoencoderConfig()
    model = models.build_autoencoder(cfg)
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert all(c.out_channels == 128 and c.kernel_size == (3, 3) and c.stride == (2, 2) for c in convs)
    acts = [m for m in model.encoder if isinstance(m, torch.nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.2 for a in acts)
    assert model.encoder[-1].out_features == 48
    pool = models.build_autoencoder(models.AutoencoderConfig(kind="pool"))
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in pool.encoder)
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in pool.decoder)


def test_bad_configs():
    with pytest.raises(ValueError, match="divisible"):
        models.AutoencoderConfig(image_size=30, widths=(8, 8))
    with pytest.raises(ValueError, match="kind"):
        models.AutoencoderConfig(kind="vae")


def _data(n=64, size=16, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (4, size, size)).astype(np.uint8)
    return base[rng.integers(0, 4, n)]


def test_training_lowers_loss_and_keeps_best(tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_CACHE", str(tmp_path))
    cfg = models.AutoencoderConfig(image_size=16, widths=(8,), latent_dim=4)
    x = _data()
    res = models.train_autoencoder(cfg, x, x[:16], train=models.TrainConfig(epochs=4, batch_size=16),
                                   progress=False)
    h = res.history
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert res.best_epoch == int(h.loc[h["val_loss"].idxmin(), "epoch"])
    # the returned model carries the best epoch's weights
    val = models.images_to_tensor(x[:16])
    with torch.no_grad():
        mse = float(torch.nn.functional.mse_loss(res.model(val)[0], val))
    assert mse == pytest.approx(h["val_loss"].min(), rel=1e-5)
    # Keras-style decay: lr after t steps is lr / (1 + decay t)
    steps = 4 * (64 // 16)
    assert h["lr"].iloc[-1] == pytest.approx(1e-3 / (1 + 2e-5 * steps))


def test_one_step_lowers_loss_on_fixed_batch():
    torch.manual_seed(0)
    model = models.build_autoencoder(models.AutoencoderConfig(image_size=16, widths=(8,), latent_dim=4))
    x = models.images_to_tensor(_data(16))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = float(torch.nn.functional.mse_loss(model(x)[0], x))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x)[0], x).backward()
        opt.step()
    assert float(torch.nn.functional.mse_loss(model(x)[0], x)) < before


def test_cache_hit_and_determinism(tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_CACHE", str(tmp_path))
    cfg = models.AutoencoderConfig(image_size=16, widths=(4,), latent_dim=3)
    x = _data(32)
    first = models.train_autoencoder(cfg, x, x[:8], train=models.TrainConfig(epochs=2, batch_size=8),
                                     progress=False)
    again = models.train_autoencoder(cfg, x, x[:8], train=models.TrainConfig(epochs=2, batch_size=8),
                                     progress=False)
    assert not first.from_cache and again.from_cache
    np.testing.assert_array_equal(models.encode(first.model, x), models.encode(again.model, x))
    fresh = models.train_autoencoder(cfg, x, x[:8], train=models.TrainConfig(epochs=2, batch_size=8),
                                     cache=False, progress=False)
    np.testing.assert_allclose(models.encode(fresh.model, x), models.encode(first.model, x), atol=1e-6)
    other = models.train_autoencoder(cfg, x, x[:8], train=models.TrainConfig(epochs=2, batch_size=8, seed=1),
                                     progress=False)
    assert other.cache_key != first.cache_key


def test_bad_images():
    cfg = models.AutoencoderConfig(image_size=16, widths=(4,), latent_dim=3)
    with pytest.raises(ValueError, match="expects 16x16"):
        models.train_autoencoder(cfg, _data(8, size=32), _data(4), cache=False, progress=False)
    with pytest.raises(ValueError, match="uint8"):
        models.images_to_tensor(np.zeros((2, 16, 16), np.float32))
    rgb = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="channel"):
        models.train_autoencoder(cfg, rgb, rgb, cache=False, progress=False)


def test_reconstruct_returns_uint8_like_input():
    cfg = models.AutoencoderConfig(image_size=16, widths=(4,), latent_dim=3)
    model = models.build_autoencoder(cfg)
    out = models.reconstruct(model, _data(3))
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8

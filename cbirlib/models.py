"""Convolutional autoencoders and their training, with a cache of trained weights.

Two architectures (notebook 02; their latents feed notebooks 03 and 04):

:class:`ConvAutoencoder` (paper 001)
    Encoder: ``len(widths)`` blocks of ``Conv2d(3x3, stride 2, padding 1)`` ->
    ``LeakyReLU(0.2)`` -> ``BatchNorm2d``, then ``Flatten`` -> ``Linear`` to the
    latent (48-d in the paper). Decoder: the mirror image, ``Linear`` ->
    ``ConvTranspose2d(3x3, stride 2)`` blocks -> ``Conv2d(3x3)`` -> ``Sigmoid``.
    Paper 001 states 128 filters of 3x3, stride 2, "same" padding, LeakyReLU
    with alpha 0.2 and a 48-d latent; it does not state the depth, nor where the
    48-d latent comes from (we use a dense layer, as the Keras convolutional
    autoencoders it resembles do) nor batch normalisation (a parameter, on by
    default). PyTorch's ``padding=1`` pads symmetrically, TensorFlow's "same"
    pads (0, 1) for stride 2: the output size is the same, the alignment is
    shifted by half a pixel.
:class:`PoolAutoencoder` (paper 000's Algorithm 1)
    Encoder: blocks of ``Conv2d(3x3, padding 1)`` -> ``ReLU`` -> ``MaxPool2d(2)``,
    then ``Linear`` to the latent; decoder: ``Linear`` -> ``ConvTranspose2d(2x2,
    stride 2)`` -> ``ReLU`` blocks -> ``Conv2d(3x3)`` -> ``Sigmoid``.

Training (:func:`train_autoencoder`): MSE loss, Adam at ``lr`` (1e-3) with paper
001's "decay 2e-5" read as the Keras ``decay`` argument it mirrors, i.e. the
learning rate after ``t`` optimiser steps is ``lr / (1 + decay * t)`` (a per-step
inverse-time schedule); the best epoch by validation loss is kept. Results are
cached under ``cache_dir("models")`` by a key made of every parameter and the
checksum of the training images, so a rerun does not retrain.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import paths
from ._io import load_trained, save_trained, sha256_bytes

__all__ = [
    "AutoencoderConfig",
    "ConvAutoencoder",
    "PoolAutoencoder",
    "build_autoencoder",
    "TrainConfig",
    "TrainResult",
    "train_autoencoder",
    "encode",
    "reconstruct",
    "images_to_tensor",
]


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture parameters (all part of the cache key).

    Attributes
    ----------
    kind : {"conv", "pool"}
        ``"conv"``: paper 001 (:class:`ConvAutoencoder`); ``"pool"``: paper 000
        (:class:`PoolAutoencoder`).
    in_channels : int
        1 for grey images, 3 for RGB.
    image_size : int
        Square input size; must be divisible by ``2 ** len(widths)``.
    latent_dim : int
        Size of the latent feature vector (48 in paper 001).
    widths : tuple of int
        Channels of each encoder block (paper 001: 128 filters).
    negative_slope : float
        LeakyReLU slope (paper 001: 0.2); unused by ``"pool"``.
    batchnorm : bool
        BatchNorm after each activation (``"conv"`` only).
    """

    kind: str = "conv"
    in_channels: int = 1
    image_size: int = 64
    latent_dim: int = 48
    widths: tuple[int, ...] = (128, 128, 128)
    negative_slope: float = 0.2
    batchnorm: bool = True

    def __post_init__(self):
        if self.kind not in ("conv", "pool"):
            raise ValueError(f"kind must be 'conv' or 'pool', got {self.kind!r}")
        if not self.widths:
            raise ValueError("widths needs at least one encoder block")
        factor = 2 ** len(self.widths)
        if self.image_size % factor:
            raise ValueError(f"image_size {self.image_size} is not divisible by 2**depth = "
                             f"{factor}; choose a size like {factor * max(1, self.image_size // factor)}")
        if self.latent_dim < 1 or self.in_channels not in (1, 3):
            raise ValueError("latent_dim must be >= 1 and in_channels 1 or 3")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))


class _Autoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        side = config.image_size // 2 ** len(config.widths)
        self._shape = (config.widths[-1], side, side)
        self.encoder = nn.Sequential(*self._down(), nn.Flatten(),
                                     nn.Linear(int(np.prod(self._shape)), config.latent_dim))
        self.decoder = nn.Sequential(nn.Linear(config.latent_dim, int(np.prod(self._shape))),
                                     nn.Unflatten(1, self._shape), *self._up(),
                                     nn.Conv2d(config.widths[0], config.in_channels, 3, padding=1),
                                     nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(reconstruction, latent)`` for images in [0, 1], shape (n, C, H, W)."""
        z = self.encoder(x)
        return self.decoder(z), z


class ConvAutoencoder(_Autoencoder):
    """Paper 001's autoencoder (see the module docstring); notebook 02."""

    def _act(self):
        return nn.LeakyReLU(self.config.negative_slope)

    def _block(self, conv):
        layers = [conv, self._act()]
        if self.config.batchnorm:
            layers.append(nn.BatchNorm2d(conv.out_channels))
        return layers

    def _down(self):
        layers, c = [], self.config.in_channels
        for w in self.config.widths:
            layers += self._block(nn.Conv2d(c, w, 3, stride=2, padding=1))
            c = w
        return layers

    def _up(self):
        layers, widths = [], list(self.config.widths[::-1])
        for c, w in zip(widths, widths[1:] + [widths[-1]]):
            layers += self._block(nn.ConvTranspose2d(c, w, 3, stride=2, padding=1,
                                                     output_padding=1))
        return layers


class PoolAutoencoder(_Autoencoder):
    """Paper 000's autoencoder: Conv + ReLU + MaxPool encoder, ConvTranspose decoder."""

    def _down(self):
        layers, c = [], self.config.in_channels
        for w in self.config.widths:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        return layers

    def _up(self):
        layers, widths = [], list(self.config.widths[::-1])
        for c, w in zip(widths, widths[1:] + [widths[-1]]):
            layers += [nn.ConvTranspose2d(c, w, 2, stride=2), nn.ReLU()]
        return layers


def build_autoencoder(config: AutoencoderConfig) -> _Autoencoder:
    """Return an untrained autoencoder for ``config`` (notebook 02)."""
    return (ConvAutoencoder if config.kind == "conv" else PoolAutoencoder)(config)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training parameters (all part of the cache key).

    ``decay`` is paper 001's Keras-style decay: ``lr_t = lr / (1 + decay * t)``
    after ``t`` optimiser steps.
    """

    epochs: int = 35
    batch_size: int = 64
    lr: float = 1e-3
    decay: float = 2e-5
    seed: int = 0


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_autoencoder` returns.

    Attributes
    ----------
    model : nn.Module
        The autoencoder with the best-validation-loss weights, in eval mode.
    history : DataFrame
        One row per epoch: ``epoch, train_loss, val_loss, lr, seconds, best`` and
        any metric returned by the epoch callback.
    best_epoch : int
    cache_key : str
    from_cache : bool
        True if nothing was trained (weights read from the cache).
    """

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    cache_key: str
    from_cache: bool


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(n, H, W)`` or ``(n, H, W, C)`` -> float tensor ``(n, C, H, W)`` in [0, 1].

    Raises
    ------
    ValueError
        For other dtypes or shapes, or non-finite values.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (n, H, W[, C]), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}; load them with "
                         "cbirlib.features.load_images")
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255.0


def _check_images(images: np.ndarray, config: AutoencoderConfig, what: str) -> None:
    shape = images.shape[1:3]
    channels = 1 if images.ndim == 3 else images.shape[3]
    if shape != (config.image_size, config.image_size) or channels != config.in_channels:
        raise ValueError(f"{what}: images are {shape} with {channels} channel(s); the model "
                         f"expects {config.image_size}x{config.image_size} with "
                         f"{config.in_channels}")
    if len(images) == 0:
        raise ValueError(f"{what}: no images")


def _cache_key(config: AutoencoderConfig, train: TrainConfig, train_images: np.ndarray,
               val_images: np.ndarray, extra: dict | None) -> str:
    payload = {"arch": dataclasses.asdict(config), "train": dataclasses.asdict(train),
               "train_images": sha256_bytes(np.ascontiguousarray(train_images).tobytes()),
               "val_images": sha256_bytes(np.ascontiguousarray(val_images).tobytes()),
               "torch": torch.__version__.split("+")[0], "extra": extra or {}}
    return sha256_bytes(json.dumps(payload, sort_keys=True).encode())[:16]


def _run_epoch(model, data, optimiser, scheduler, batch_size, generator) -> float:
    model.train()
    order = torch.randperm(len(data), generator=generator)
    total = 0.0
    for start in range(0, len(data), batch_size):
        batch = data[order[start:start + batch_size]]
        optimiser.zero_grad(set_to_none=True)
        recon, _ = model(batch)
        loss = nn.functional.mse_loss(recon, batch)
        loss.backward()
        optimiser.step()
        scheduler.step()
        total += loss.item() * len(batch)
    return total / len(data)


@torch.no_grad()
def _mse(model, data, batch_size) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(data), batch_size):
        batch = data[start:start + batch_size]
        total += float(nn.functional.mse_loss(model(batch)[0], batch, reduction="sum"))
    return total / data.numel()


def train_autoencoder(config: AutoencoderConfig, train_images: np.ndarray,
                      val_images: np.ndarray, *, train: TrainConfig = TrainConfig(),
                      epoch_callback: Callable[[nn.Module, int], dict] | None = None,
                      cache: bool = True, cache_extra: dict | None = None,
                      progress: bool = True) -> TrainResult:
    """Train an autoencoder with MSE, keeping the best epoch by validation loss.

    Used by notebook 02. Seeds: ``torch.manual_seed(train.seed)`` is called here
    (for the weight initialisation) and a dedicated ``torch.Generator`` shuffles
    the batches, so the same inputs and seed give the same weights on the same
    machine and library versions.

    Parameters
    ----------
    config : AutoencoderConfig
    train_images, val_images : ndarray of uint8
        ``(n, H, W)`` or ``(n, H, W, C)``; see :func:`cbirlib.features.load_images`.
    train : TrainConfig, keyword-only
    epoch_callback : callable, optional, keyword-only
        ``epoch_callback(model, epoch) -> dict`` of extra per-epoch metrics (e.g.
        validation retrieval accuracy, paper 001 Fig 8); part of the history.
        Its identity is not in the cache key: pass ``cache_extra`` to describe it.
    cache : bool, keyword-only
        Read and write ``cache_dir("models")/<key>/``.
    progress : bool, keyword-only
        Show a tqdm bar over epochs.
    """
    from tqdm.auto import tqdm

    _check_images(train_images, config, "train_images")
    _check_images(val_images, config, "val_images")
    key = _cache_key(config, train, train_images, val_images, cache_extra)
    folder = paths.cache_dir("models", create=False) / f"autoencoder-{key}"
    model = build_autoencoder(config)
    cached = load_trained(folder) if cache else None
    if cached is not None:
        state, history, meta = cached
        model.load_state_dict(state)
        model.eval()
        return TrainResult(model, history, int(meta["best_epoch"]), key, True)

    torch.manual_seed(train.seed)
    model = build_autoencoder(config)
    generator = torch.Generator().manual_seed(train.seed)
    x_train, x_val = images_to_tensor(train_images), images_to_tensor(val_images)
    optimiser = torch.optim.Adam(model.parameters(), lr=train.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 1.0 / (1.0 + train.decay * step))
    rows, best, best_state = [], math.inf, None
    bar = tqdm(range(1, train.epochs + 1), desc=f"train {config.kind} AE", disable=not progress)
    for epoch in bar:
        start = time.perf_counter()
        train_loss = _run_epoch(model, x_train, optimiser, scheduler, train.batch_size, generator)
        val_loss = _mse(model, x_val, train.batch_size)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
               "lr": optimiser.param_groups[0]["lr"], "seconds": time.perf_counter() - start}
        if epoch_callback is not None:
            model.eval()
            row.update(epoch_callback(model, epoch))
        row["best"] = val_loss < best
        if row["best"]:
            best = val_loss
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        rows.append(row)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
    model.load_state_dict(best_state)
    model.eval()
    history = pd.DataFrame(rows)
    best_epoch = int(history.loc[history["val_loss"].idxmin(), "epoch"])
    if cache:
        save_trained(folder, model.state_dict(), history,
                     {"best_epoch": best_epoch, "config": dataclasses.asdict(config),
                      "train": dataclasses.asdict(train), "extra": cache_extra or {}})
    return TrainResult(model, history, best_epoch, key, False)


@torch.no_grad()
def encode(model: nn.Module, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Latent features ``(n, latent_dim)`` float32 of uint8 images (notebooks 02-04)."""
    model.eval()
    out = [model.encoder(images_to_tensor(images[s:s + batch_size])).numpy()
           for s in range(0, len(images), batch_size)]
    feats = np.concatenate(out).astype(np.float32)
    if not np.isfinite(feats).all():
        raise FloatingPointError("the encoder produced non-finite features; the model diverged")
    return feats


@torch.no_grad()
def reconstruct(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Reconstructions as uint8 images of the input's shape (notebook 02 figures)."""
    model.eval()
    recon = model(images_to_tensor(images))[0].numpy().transpose(0, 2, 3, 1)
    recon = np.clip(np.rint(recon * 255), 0, 255).astype(np.uint8)
    return recon[..., 0] if np.asarray(images).ndim == 3 else recon

"""Two-stage coarse-to-fine inpainting network and simple baselines (paper 002, notebook 05).

Paper 002 (Taheri, Rahbar, Beheshtifard) reconstructs query images with missing
regions before retrieval, with the network of Ma et al. (IJCAI 2019, "Coarse-to-fine
image inpainting via region-wise convolutions and non-local correlation", the
paper's ref. [38]). This module implements that network at a size a CPU can
train, its losses (paper 002's eq. 6-9), a cached training loop, and two
baselines:

=================================  =================================================
name                               what
=================================  =================================================
:class:`RegionConv2d`              region-wise convolution (eq. 5): one filter bank
                                   for existing, another for missing positions
:class:`NonLocalBlock`             embedded-Gaussian non-local correlation block
:class:`TwoStageInpainter`         stage 1: region-wise encoder-decoder (coarse);
                                   stage 2: refinement of the *composited* stage-1
                                   output with a non-local block (eq. 3-4)
:class:`InpaintLoss`               eq. 6 (L1 on both stages), eq. 7 (correlation of
                                   feature patches, stage-1 composite), eq. 8 (Gram
                                   style loss, stage-2 composite), eq. 9 (their sum)
:func:`train_inpainter`            Adam on random free-form masks, cached by its
                                   parameters under ``cache_dir("models")``
:func:`inpaint`                    run a trained network, return composited uint8
:func:`mean_fill`                  baseline: missing pixels = mean of kept pixels
:func:`biharmonic_fill`            baseline: scikit-image ``inpaint_biharmonic``
:func:`reconstruct`                one of the three by name
=================================  =================================================

Conventions
-----------
Masks follow :mod:`cbirlib.masks`: boolean, ``True`` = pixel kept (known),
``False`` = missing. Inside the network the mask is a float tensor ``m`` of
shape ``(N, 1, H, W)``, 1 on kept pixels; images are float ``(N, 3, H, W)`` in
[0, 1]. The masked input is ``x * m`` (the paper's element-wise product) and
the network also sees ``m`` as a fourth channel.

Region-wise convolution (eq. 5)
-------------------------------
``y_p = W_e^T x_p + b_e`` if output position ``p`` belongs to the existing
region, ``W_m^T x_p + b_m`` if it belongs to the missing region. An output
position of a stride-``s`` convolution belongs to the existing region when all
``s x s`` input positions it is centred on are existing (the region mask is
min-pooled with the stride), so a position touched by the hole at a coarser
scale is treated as missing. Both filter banks see the whole window; only the
choice of filters depends on the region. :func:`region_mask` computes the
region of every layer; tests check that changing ``W_m`` changes exactly the
outputs at missing positions.

Non-local correlation
---------------------
Wang et al.'s embedded-Gaussian block, ``z = x + W_z softmax(theta(x)^T phi(x))
g(x)`` over all positions of the stage-2 bottleneck, so every (missing)
position can draw on every other. It sits in stage 2, which sees the composited
stage-1 estimate (eq. 3), as in Ma et al., where the correlation between
regions is modelled on the coarse result.

Losses and their weights
------------------------
* eq. 6, reconstruction: ``|I_1 - I_gt|_1 + |I_2 - I_gt|_1`` (means over pixels
  and channels), with missing pixels weighted ``hole_weight`` times (1 = the
  equation as printed);
* eq. 7, correlation: with ``f`` the L2-normalised feature vectors of a
  pretrained backbone at ``correlation_stage`` (``N`` positions), ``mean_ij
  |f_i(C_1)^T f_j(C_1) - f_i(I_gt)^T f_j(I_gt)|`` on the stage-1 composite
  ``C_1`` (the ``1 / N^2`` is the paper's position normalisation);
* eq. 8, style: ``sum_l mean |G_l(C_2) - G_l(I_gt)|`` with ``G_l = F_l F_l^T /
  (C_l H_l W_l)`` the Gram matrix of the backbone's ``l``-th stage, on the
  stage-2 composite ``C_2``;
* eq. 9: ``L_rec + lambda_cor L_cor + lambda_style L_style``.

Paper 002 takes these features from VGG-16, whose weights cannot be installed
here; a frozen ImageNet-pretrained backbone that can (MobileNetV2 by default,
:func:`cbirlib.backbones.load_backbone`) stands in. The weights ``lambda_*``
are not given by paper 002; the defaults make each term a few tenths of the
reconstruction term at initialisation.

References
----------
.. [1] Y. Ma, X. Liu, S. Bai, L. Wang, D. He, A. Liu, "Coarse-to-fine image
   inpainting via region-wise convolutions and non-local correlation", IJCAI 2019.
.. [2] X. Wang, R. Girshick, A. Gupta, K. He, "Non-local neural networks", CVPR 2018.
.. [3] Taheri, Rahbar, Beheshtifard (paper 002), eq. 3-9.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import paths
from ._io import load_trained, save_trained, sha256_bytes
from .masks import apply_mask, random_free_form_mask

__all__ = [
    "METHODS",
    "InpaintConfig",
    "InpaintTrainConfig",
    "InpaintResult",
    "RegionConv2d",
    "NonLocalBlock",
    "TwoStageInpainter",
    "InpaintLoss",
    "region_mask",
    "to_tensors",
    "training_masks",
    "train_inpainter",
    "inpaint",
    "mean_fill",
    "biharmonic_fill",
    "reconstruct",
]

#: Reconstruction methods of :func:`reconstruct`, in the order notebook 05 reports them.
METHODS: tuple[str, ...] = ("two-stage network", "mean fill", "biharmonic")


# --------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------


def region_mask(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The existing-region mask of a layer's output grid.

    Parameters
    ----------
    mask : Tensor (N, 1, H, W)
        1 = existing (kept), 0 = missing, at the layer's input resolution.
    size : (h, w)
        The output grid. ``(H, W)`` returns ``mask``; an integer factor ``s``
        smaller min-pools with an ``s x s`` window (existing only if all ``s x s``
        inputs are); a larger grid (decoder upsampling) uses nearest neighbours.

    Returns
    -------
    Tensor (N, 1, h, w) of 0/1 floats.
    """
    h, w = int(size[0]), int(size[1])
    H, W = mask.shape[-2:]
    if (h, w) == (H, W):
        return mask
    if h < H:
        if H % h or W % w or H // h != W // w:
            raise ValueError(f"cannot pool a {H}x{W} mask to {h}x{w}: use sizes divisible by the stride")
        s = H // h
        return -F.max_pool2d(-mask, kernel_size=s, stride=s)
    return F.interpolate(mask, size=(h, w), mode="nearest")


class RegionConv2d(nn.Module):
    """Region-wise convolution (paper 002 eq. 5, Ma et al. 2019).

    Two convolutions with the same geometry: ``known`` (``W_e``, ``b_e``) is
    used at output positions in the existing region, ``missing`` (``W_m``,
    ``b_m``) at positions in the missing region (:func:`region_mask`). Used by
    :class:`TwoStageInpainter` (notebook 05).

    Parameters
    ----------
    in_channels, out_channels, kernel_size : int
    stride, dilation : int, keyword-only
        Padding keeps ``ceil(size / stride)`` output positions for odd kernels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 dilation: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        pad = dilation * (kernel_size - 1) // 2
        conv = dict(kernel_size=kernel_size, stride=stride, padding=pad, dilation=dilation)
        self.known = nn.Conv2d(in_channels, out_channels, **conv)
        self.missing = nn.Conv2d(in_channels, out_channels, **conv)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(output, output_region_mask)``; ``mask`` is at ``x``'s resolution."""
        a, b = self.known(x), self.missing(x)
        m = region_mask(mask, a.shape[-2:])
        return m * a + (1.0 - m) * b, m


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block with a residual connection (Wang et al. 2018).

    ``z = x + W_z(softmax_j(theta(x)_i . phi(x)_j) g(x)_j)``; ``W_z`` starts at
    zero so the block starts as the identity. Used in stage 2 of
    :class:`TwoStageInpainter`. The last attention matrix is kept in
    :attr:`attention` (``(N, HW, HW)``) for inspection.
    """

    def __init__(self, channels: int, *, inner: int | None = None) -> None:
        super().__init__()
        inner = inner or max(channels // 2, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        t = self.theta(x).flatten(2).transpose(1, 2)  # (n, hw, c')
        p = self.phi(x).flatten(2)  # (n, c', hw)
        g = self.g(x).flatten(2).transpose(1, 2)  # (n, hw, c')
        att = torch.softmax(t @ p, dim=-1)
        self.attention = att.detach()
        z = (att @ g).transpose(1, 2).reshape(n, -1, h, w)
        return x + self.out(z)


@dataclasses.dataclass(frozen=True)
class InpaintConfig:
    """Architecture of :class:`TwoStageInpainter` (all part of the cache key).

    Attributes
    ----------
    image_size : int
        Side of the square images it is trained on (divisible by 4; the network
        is fully convolutional but is used at this size).
    width : int
        Channels of the first layer; the encoders use ``width``, ``2 width``,
        ``4 width`` at full, 1/2 and 1/4 resolution.
    """

    image_size: int = 64
    width: int = 16

    def __post_init__(self):
        if self.image_size < 8 or self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 and >= 8, got {self.image_size}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")


class TwoStageInpainter(nn.Module):
    """Coarse-to-fine inpainting generator (paper 002 Fig. 3, eq. 3-5; Ma et al. 2019).

    Stage 1 (coarse): an encoder-decoder of :class:`RegionConv2d` layers on
    ``[x * m, m]`` (two stride-2 steps, two dilated layers, two upsampling
    steps) predicts ``I_1``; the composite ``C_1 = m x + (1 - m) I_1`` (eq. 3)
    goes to stage 2 (fine): an encoder-decoder of ordinary convolutions with a
    :class:`NonLocalBlock` at 1/4 resolution, predicting ``I_2``; the result is
    ``C_2 = m x + (1 - m) I_2`` (eq. 4). Outputs are in [0, 1] (sigmoid).

    ``forward(x, m)`` returns ``(I_1, C_1, I_2, C_2)``.
    """

    def __init__(self, config: InpaintConfig = InpaintConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.width
        act = nn.LeakyReLU(0.2)
        self.act = act
        # stage 1: region-wise encoder-decoder
        self.s1 = nn.ModuleList([
            RegionConv2d(4, w, 5),
            RegionConv2d(w, 2 * w, 3, stride=2),
            RegionConv2d(2 * w, 4 * w, 3, stride=2),
            RegionConv2d(4 * w, 4 * w, 3, dilation=2),
            RegionConv2d(4 * w, 4 * w, 3, dilation=4),
        ])
        self.s1_up = nn.ModuleList([RegionConv2d(4 * w, 2 * w, 3), RegionConv2d(2 * w, w, 3)])
        self.s1_out = nn.Conv2d(w, 3, 3, padding=1)
        # stage 2: refinement with non-local correlation
        self.s2_enc = nn.Sequential(
            nn.Conv2d(4, w, 5, padding=2), act,
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), act,
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), act,
            nn.Conv2d(4 * w, 4 * w, 3, padding=2, dilation=2), act,
        )
        self.nonlocal_block = NonLocalBlock(4 * w)
        self.s2_dec = nn.Sequential(
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), act,
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(4 * w, 2 * w, 3, padding=1), act,
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(2 * w, w, 3, padding=1), act,
            nn.Conv2d(w, 3, 3, padding=1),
        )

    def stage1(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The coarse estimate ``I_1`` (before compositing)."""
        h, mm = torch.cat([x * m, m], dim=1), m
        for layer in self.s1:
            h, mm = layer(h, mm)
            h = self.act(h)
        for layer in self.s1_up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h, _ = layer(h, region_mask(m, h.shape[-2:]))
            h = self.act(h)
        return torch.sigmoid(self.s1_out(h))

    def stage2(self, c1: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The refined estimate ``I_2`` from the stage-1 composite."""
        h = self.s2_enc(torch.cat([c1, m], dim=1))
        h = self.nonlocal_block(h)
        return torch.sigmoid(self.s2_dec(h))

    def forward(self, x: torch.Tensor, m: torch.Tensor):
        i1 = self.stage1(x, m)
        c1 = m * x + (1.0 - m) * i1
        i2 = self.stage2(c1, m)
        c2 = m * x + (1.0 - m) * i2
        return i1, c1, i2, c2


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------


def _gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def _correlation(f: torch.Tensor) -> torch.Tensor:
    f = F.normalize(f.flatten(2), dim=1)  # (n, c, N): unit feature vector per position
    return f.transpose(1, 2) @ f  # (n, N, N) cosine similarity between positions


class InpaintLoss(nn.Module):
    """Paper 002's eq. 6-9 with a frozen pretrained backbone as feature extractor.

    Parameters
    ----------
    backbone : cbirlib.backbones.Backbone or None
        Feature extractor for eq. 7 and 8 (its parameters are frozen). ``None``
        (tests) keeps only eq. 6.
    style_stages : sequence of str
        Backbone stages whose Gram matrices enter eq. 8.
    correlation_stage : str
        Backbone stage of eq. 7.
    hole_weight, lambda_cor, lambda_style : float
        See the module docstring.

    ``forward(outputs, target, m)`` returns ``(total, parts)`` with ``parts`` a
    dict of floats ``rec``, ``cor``, ``style``, ``total``.
    """

    def __init__(self, backbone=None, *, style_stages: Sequence[str] = ("block1", "block2", "block3"),
                 correlation_stage: str = "block3", hole_weight: float = 1.0, lambda_cor: float = 0.1,
                 lambda_style: float = 10.0) -> None:
        super().__init__()
        self.backbone = backbone
        if backbone is not None:
            for p in backbone.model.parameters():
                p.requires_grad_(False)
            backbone.model.eval()
        self.style_stages = tuple(style_stages)
        self.correlation_stage = correlation_stage
        self.hole_weight = float(hole_weight)
        self.lambda_cor = float(lambda_cor)
        self.lambda_style = float(lambda_style)

    def _feats(self, x: torch.Tensor, stages) -> dict:
        from .backbones import feature_maps

        return feature_maps(self.backbone, self.backbone.normalize(x), stages=list(stages))

    def reconstruction(self, out: torch.Tensor, target: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Eq. 6 term of one stage: weighted mean absolute error."""
        weight = m + self.hole_weight * (1.0 - m)
        return (weight * (out - target).abs()).mean() / weight.mean()

    def forward(self, outputs, target: torch.Tensor, m: torch.Tensor):
        i1, c1, i2, c2 = outputs
        rec = self.reconstruction(i1, target, m) + self.reconstruction(i2, target, m)
        total = rec
        parts = {"rec": float(rec.detach())}
        if self.backbone is not None and (self.lambda_cor or self.lambda_style):
            stages = sorted(set(self.style_stages) | {self.correlation_stage})
            with torch.no_grad():
                ft = self._feats(target, stages)
            cor = torch.zeros((), dtype=target.dtype)
            if self.lambda_cor:
                fc1 = self._feats(c1, [self.correlation_stage])[self.correlation_stage]
                cor = (_correlation(fc1) - _correlation(ft[self.correlation_stage])).abs().mean()
            style = torch.zeros((), dtype=target.dtype)
            if self.lambda_style:
                fc2 = self._feats(c2, self.style_stages)
                style = sum((_gram(fc2[s]) - _gram(ft[s])).abs().mean() for s in self.style_stages)
            total = rec + self.lambda_cor * cor + self.lambda_style * style
            parts.update(cor=float(cor.detach()), style=float(style.detach()))
        parts["total"] = float(total.detach())
        return total, parts


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def to_tensors(images: np.ndarray, masks: np.ndarray | None = None):
    """uint8 ``(n, H, W, 3)`` images (and bool ``(n, H, W)`` masks) to float tensors.

    Returns ``x`` ``(n, 3, H, W)`` in [0, 1], and ``m`` ``(n, 1, H, W)`` (1 = kept)
    when masks are given.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (n, H, W, 3), got {images.dtype} {images.shape}; "
                         "load them with cbirlib.features.load_images(..., mode='RGB')")
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255.0
    if masks is None:
        return x
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.shape != images.shape[:3]:
        raise ValueError(f"masks must be bool (n, H, W) matching the images {images.shape[:3]}, "
                         f"got {masks.dtype} {masks.shape} (True = kept)")
    return x, torch.from_numpy(masks[:, None].astype(np.float32))


def training_masks(n: int, size: int, *, seed: int, max_strokes: int = 4) -> np.ndarray:
    """``n`` random free-form masks (:func:`cbirlib.masks.random_free_form_mask`), bool ``(n, S, S)``.

    Brush widths and stroke lengths are DeepFill v2's for 256 px, scaled to
    ``size``; ``max_strokes`` (default 4, DeepFill's 3 + 1) strokes at most, so
    that larger holes, closer to the fringe masks' 50%, also occur.
    """
    rng = np.random.default_rng(seed)
    scale = size / 256.0
    return np.stack([random_free_form_mask(size, size, rng=rng, max_strokes=max_strokes,
                                           min_width=max(12.0 * scale, 1.0), max_width=max(40.0 * scale, 2.0))
                     for _ in range(n)])


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InpaintTrainConfig:
    """Training parameters of :func:`train_inpainter` (all part of the cache key).

    ``steps`` Adam steps of ``batch_size`` images drawn with replacement (a
    seeded generator), each with a mask drawn from a pool of ``n_masks``
    free-form masks (:func:`training_masks`); learning rate ``lr`` halved at
    2/3 of the steps. The loss is :class:`InpaintLoss` with the weights and
    stages given here, on ``loss_backbone`` (``""``: reconstruction only).
    """

    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-3
    n_masks: int = 1000
    hole_weight: float = 1.0
    lambda_cor: float = 0.1
    lambda_style: float = 10.0
    loss_backbone: str = "mobilenet_v2"
    style_stages: tuple[str, ...] = ("block1", "block2", "block3")
    correlation_stage: str = "block3"
    log_every: int = 25
    seed: int = 0


@dataclasses.dataclass
class InpaintResult:
    """What :func:`train_inpainter` returns.

    Attributes
    ----------
    model : TwoStageInpainter
        In eval mode.
    history : DataFrame
        One row per ``log_every`` steps: ``step``, the mean of each loss part over
        those steps (``rec``, ``cor``, ``style``, ``total``), ``val_l1_hole`` (mean
        absolute error of ``C_2`` on the missing pixels of fixed validation
        masks) and ``seconds`` (cumulative).
    cache_key : str
    from_cache : bool
    """

    model: TwoStageInpainter
    history: pd.DataFrame
    cache_key: str
    from_cache: bool


def _cache_key(config: InpaintConfig, train: InpaintTrainConfig, images: np.ndarray,
               val_images: np.ndarray) -> str:
    payload = {"arch": dataclasses.asdict(config), "train": dataclasses.asdict(train),
               "images": sha256_bytes(np.ascontiguousarray(images).tobytes()),
               "val_images": sha256_bytes(np.ascontiguousarray(val_images).tobytes()),
               "torch": torch.__version__.split("+")[0], "version": 1}
    return sha256_bytes(json.dumps(payload, sort_keys=True).encode())[:16]


def _loss_for(config: InpaintConfig, train: InpaintTrainConfig) -> InpaintLoss:
    backbone = None
    if train.loss_backbone:
        from .backbones import load_backbone

        backbone = load_backbone(train.loss_backbone, input_size=config.image_size, channels_last=False)
    return InpaintLoss(backbone, style_stages=train.style_stages, correlation_stage=train.correlation_stage,
                       hole_weight=train.hole_weight, lambda_cor=train.lambda_cor,
                       lambda_style=train.lambda_style)


@torch.no_grad()
def _val_l1_hole(model, x, m) -> float:
    model.eval()
    c2 = model(x, m)[3]
    hole = 1.0 - m
    err = float(((c2 - x).abs() * hole).sum() / (3 * hole.sum()).clamp_min(1))
    model.train()
    return err


def train_inpainter(config: InpaintConfig, images: np.ndarray, val_images: np.ndarray, *,
                    train: InpaintTrainConfig = InpaintTrainConfig(), cache: bool = True,
                    progress: bool = True) -> InpaintResult:
    """Train :class:`TwoStageInpainter` on free-form masks, or load it from the cache.

    Used by notebook 05, which trains on Caltech-101 (never on the query
    images). ``torch.manual_seed(train.seed)`` initialises the weights; a
    ``torch.Generator`` seeded with ``train.seed`` draws batches and masks, so
    the same inputs give the same weights on the same machine, thread count and
    library versions.

    Parameters
    ----------
    config : InpaintConfig
    images, val_images : ndarray of uint8, ``(n, S, S, 3)``
        Training and validation images at ``config.image_size``.
    train : InpaintTrainConfig, keyword-only
    cache : bool, keyword-only
        Read and write ``cache_dir("models")/inpaint-<key>/`` (``model.pt``,
        ``history.csv``, ``meta.json``), the key hashing both configs, the
        images and the torch version.
    progress : bool, keyword-only
    """
    from tqdm.auto import tqdm

    for what, arr in (("images", images), ("val_images", val_images)):
        if arr.ndim != 4 or arr.shape[1:] != (config.image_size, config.image_size, 3) or len(arr) == 0:
            raise ValueError(f"{what}: expected uint8 (n, {config.image_size}, {config.image_size}, 3), "
                             f"got {arr.shape}; load them at config.image_size")
    key = _cache_key(config, train, images, val_images)
    folder = paths.cache_dir("models", create=False) / f"inpaint-{key}"
    cached = load_trained(folder) if cache else None
    if cached is not None:
        model = TwoStageInpainter(config)
        model.load_state_dict(cached[0])
        model.eval()
        return InpaintResult(model, cached[1], key, True)

    torch.manual_seed(train.seed)
    model = TwoStageInpainter(config)
    loss_fn = _loss_for(config, train)
    gen = torch.Generator().manual_seed(train.seed)
    x_all = to_tensors(images)
    pool = torch.from_numpy(training_masks(train.n_masks, config.image_size, seed=train.seed)[:, None]
                            .astype(np.float32))
    vx = to_tensors(val_images)
    vm = torch.from_numpy(training_masks(len(val_images), config.image_size, seed=train.seed + 1)[:, None]
                          .astype(np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=train.lr, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[max(1, 2 * train.steps // 3)], gamma=0.5)
    rows, acc, start = [], [], time.perf_counter()
    model.train()
    bar = tqdm(range(1, train.steps + 1), desc="train inpainter", disable=not progress, mininterval=2)
    for step in bar:
        idx = torch.randint(0, len(x_all), (train.batch_size,), generator=gen)
        midx = torch.randint(0, len(pool), (train.batch_size,), generator=gen)
        x, m = x_all[idx], pool[midx]
        opt.zero_grad(set_to_none=True)
        total, parts = loss_fn(model(x, m), x, m)
        total.backward()
        opt.step()
        sched.step()
        acc.append(parts)
        if step % train.log_every == 0 or step == train.steps:
            row = {"step": step, **pd.DataFrame(acc).mean().to_dict(),
                   "val_l1_hole": _val_l1_hole(model, vx, vm), "seconds": time.perf_counter() - start}
            rows.append(row)
            acc = []
            bar.set_postfix(loss=f"{row['total']:.4f}", val=f"{row['val_l1_hole']:.4f}")
    model.eval()
    history = pd.DataFrame(rows)
    if cache:
        save_trained(folder, model.state_dict(), history,
                     {"config": dataclasses.asdict(config), "train": dataclasses.asdict(train)})
    return InpaintResult(model, history, key, False)


# --------------------------------------------------------------------------
# inference and baselines
# --------------------------------------------------------------------------


def _check_pair(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images, masks = np.asarray(images), np.asarray(masks)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (n, H, W, 3), got {images.dtype} {images.shape}")
    if masks.ndim == 2:
        masks = np.broadcast_to(masks, images.shape[:3])
    if masks.dtype != bool or masks.shape != images.shape[:3]:
        raise ValueError(f"masks must be bool (H, W) or (n, H, W) matching {images.shape[:3]} "
                         f"(True = kept), got {masks.dtype} {masks.shape}")
    return images, masks


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return np.rint(x.clamp(0, 1).numpy().transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)


@torch.no_grad()
def inpaint(model: TwoStageInpainter, images: np.ndarray, masks: np.ndarray, *, batch_size: int = 32,
            stage: int = 2) -> np.ndarray:
    """Reconstruct masked images with a trained network; kept pixels are copied back.

    Parameters
    ----------
    model : TwoStageInpainter
    images : uint8 ``(n, H, W, 3)``
        The *original* images; only their kept pixels are shown to the network.
    masks : bool ``(H, W)`` or ``(n, H, W)``, True = kept
    stage : {1, 2}, keyword-only
        Return the stage-1 composite ``C_1`` or the final ``C_2``.

    Returns
    -------
    uint8 ``(n, H, W, 3)``, equal to ``images`` on kept pixels.
    """
    images, masks = _check_pair(images, masks)
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x, m = to_tensors(images[i:i + batch_size], np.ascontiguousarray(masks[i:i + batch_size]))
        x = x * m  # the network never sees the missing pixels
        res = model(x, m)
        out.append(_to_uint8(res[1] if stage == 1 else res[3]))
    result = np.concatenate(out)
    result[masks] = images[masks]
    return result


def mean_fill(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Baseline: each image's missing pixels get the mean colour of its kept pixels."""
    images, masks = _check_pair(images, masks)
    return np.stack([apply_mask(im, m, fill="mean") for im, m in zip(images, masks)])


def biharmonic_fill(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Baseline: scikit-image's ``inpaint_biharmonic`` per image (per channel), uint8 out.

    Missing regions touching no kept pixel cannot be filled by it; a mask that
    hides everything raises ``ValueError``.
    """
    from skimage.restoration import inpaint_biharmonic

    images, masks = _check_pair(images, masks)
    out = np.empty_like(images)
    for i, (im, m) in enumerate(zip(images, masks)):
        if not m.any():
            raise ValueError(f"image {i}: the mask hides every pixel; nothing to inpaint from")
        if m.all():
            out[i] = im
            continue
        filled = inpaint_biharmonic(im.astype(np.float64) / 255.0, ~m, channel_axis=-1)
        out[i] = np.rint(np.clip(filled, 0, 1) * 255.0).astype(np.uint8)
        out[i][m] = im[m]
    return out


def reconstruct(method: str, images: np.ndarray, masks: np.ndarray, *,
                model: TwoStageInpainter | None = None) -> np.ndarray:
    """Reconstruct with one of :data:`METHODS` (``"masked"`` returns ``x * m``); notebook 05."""
    if method == "two-stage network":
        if model is None:
            raise ValueError("the two-stage network needs model=; train it with train_inpainter")
        return inpaint(model, images, masks)
    if method == "mean fill":
        return mean_fill(images, masks)
    if method == "biharmonic":
        return biharmonic_fill(images, masks)
    if method == "masked":
        images, masks = _check_pair(images, masks)
        return images * masks[..., None]
    raise ValueError(f"unknown method {method!r}; choose from {METHODS + ('masked',)}")

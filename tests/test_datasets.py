"""Tests for :mod:`cbirlib.datasets`.

Fast tests build tiny archives in ``tmp_path`` and never touch the network: the
"online" path is served by ``http.server`` on 127.0.0.1. Tests marked ``data`` use
the real archives (``$CBIR_DATA_MIRROR`` or ``../shared/data``) and skip without
them; the ones that unpack a large archive are also marked ``slow``. They unpack
into ``$CBIR_CACHE`` when it is set, else into one session-wide temporary cache.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cbirlib.datasets as ds
from cbirlib._io import sha256_file

REPO = Path(__file__).resolve().parents[1]
DEAD_PID = 999_999_999  # above Linux's pid_max: never a running process


# --------------------------------------------------------------------------- helpers


def _png_bytes(value: int, *, size=(4, 4), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color=value if mode == "L" else (value, 255 - value, 7)).save(buf, "PNG")
    return buf.getvalue()


def _add_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tf.addfile(info, io.BytesIO(data))


def _add_dir(tf: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tf.addfile(info)


def _make_archive(path: Path, *, folder: str = "toyset", classes=None, splits=None,
                  extra: tuple = ()) -> Path:
    """Write ``path`` (.tar.xz) holding ``folder/[split/]<class>/<i>.png`` + SOURCE.md.

    ``extra`` holds TarInfo-building callables ``f(tf)`` for malicious members.
    """
    classes = {"cat": 3, "dog": 2} if classes is None else classes
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:xz") as tf:
        _add_dir(tf, folder)
        _add_file(tf, f"{folder}/SOURCE.md", b"# toy\n")
        value = 0
        for split in (splits or [""]):
            base = f"{folder}/{split}/" if split else f"{folder}/"
            for cls, n in classes.items():
                _add_dir(tf, base + cls)
                for i in range(n):
                    value += 10
                    _add_file(tf, f"{base}{cls}/{i}.png", _png_bytes(value))
                _add_file(tf, f"{base}{cls}/notes.txt", b"not an image\n")
        for add in extra:
            add(tf)
    return path


def _spec(archive: Path, *, name: str = "toyset", sha: str | None = None,
          folder: str = "toyset", **kw) -> ds.DatasetSpec:
    return ds.DatasetSpec(
        name=name, archive=archive.name, sha256=sha or sha256_file(archive), folder=folder,
        description="toy", stands_in_for="nothing", licence="CC0",
        source_url="https://example.invalid/toy", layout=f"{folder}/<class>/<i>.png", **kw)


def _leftovers(cache: Path) -> list[str]:
    base = cache / "datasets"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Private cache, a mirror folder (not yet in the environment), no download URL."""
    cache, mirror = tmp_path / "cache", tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("CBIR_CACHE", str(cache))
    monkeypatch.delenv("CBIR_DATA_MIRROR", raising=False)
    monkeypatch.delenv("CBIR_DATA_URL", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return SimpleNamespace(cache=cache, mirror=mirror, tmp=tmp_path, mp=monkeypatch)


@pytest.fixture
def toy(env):
    """A toy archive in the mirror, registered as ``toyset`` for the test's duration."""
    archive = _make_archive(env.mirror / "toyset.tar.xz")
    env.mp.setenv("CBIR_DATA_MIRROR", str(env.mirror))
    with ds.register(_spec(archive)) as spec:
        yield SimpleNamespace(**vars(env), archive=archive, spec=spec)


@pytest.fixture
def http_files():
    """Serve a dict ``{path: bytes}`` over HTTP on 127.0.0.1 (random port)."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            data = files.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}/archives",
                              files=files)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- registry

EXPECTED_NAMES = {"corel1k", "cifar10", "medical_mnist", "gallbladder", "caltech101",
                  "tiny_imagenet_val", "tiny_imagenet_train", "paris6k", "digits"}


def test_registry_names_and_fields():
    assert set(ds.list_datasets()) == EXPECTED_NAMES
    assert ds.list_datasets() == sorted(ds.list_datasets())
    for name, spec in ds.REGISTRY.items():
        assert spec.name == name
        for text in (spec.folder, spec.description, spec.stands_in_for, spec.licence,
                     spec.source_url, spec.layout):
            assert text.strip(), (name, text)
        assert spec.source_url.startswith(("http://", "https://"))
        assert spec.n_images and spec.n_classes and spec.notebooks
        assert callable(spec.parser)
        if name != "digits":
            assert spec.archive.endswith(".tar.xz") and len(spec.sha256) == 64
    assert ds.REGISTRY["digits"].archive is None and ds.REGISTRY["digits"].embedded


def test_registry_sha256_matches_mirror_sums():
    sums = REPO.parent / "shared" / "data" / "SHA256SUMS"
    mirror = os.environ.get("CBIR_DATA_MIRROR")
    if mirror and (Path(mirror) / "SHA256SUMS").is_file():
        sums = Path(mirror) / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip("no SHA256SUMS: dataset mirror absent (../shared/data or $CBIR_DATA_MIRROR)")
    listed = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, fname = line.split()
            listed[fname.lstrip("*")] = digest
    registered = {s.archive: s.sha256 for s in ds.REGISTRY.values() if s.archive}
    assert registered == listed


def test_get_spec_unknown_name():
    with pytest.raises(KeyError, match="known: .*corel1k"):
        ds.get_spec("nope")


def test_register_is_temporary_in_with_and_refuses_duplicates(tmp_path):
    archive = _make_archive(tmp_path / "toyset.tar.xz")
    spec = _spec(archive)
    with ds.register(spec):
        assert ds.get_spec("toyset") is spec
        with pytest.raises(ValueError, match="already registered"):
            ds.register(spec)
        with ds.register(dataclasses.replace(spec, description="other"), replace=True):
            assert ds.get_spec("toyset").description == "other"
        assert ds.get_spec("toyset") is spec
    assert "toyset" not in ds.REGISTRY


@pytest.mark.parametrize("changes, match", [
    ({"sha256": "abc"}, "sha256"),
    ({"sha256": None}, "both"),
    ({"folder": "../up"}, "folder"),
    ({"name": "bad name"}, "name"),
])
def test_spec_validation(tmp_path, changes, match):
    spec = _spec(_make_archive(tmp_path / "toyset.tar.xz"))
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(spec, **changes)


# --------------------------------------------------------------------------- fetch


def test_fetch_from_mirror_then_from_cache(toy, monkeypatch):
    calls = []
    real_extract = ds._safe_extract
    monkeypatch.setattr(ds, "_safe_extract", lambda *a, **k: (calls.append(1), real_extract(*a, **k)))
    assert not (toy.cache / "datasets" / "toyset").exists()
    assert ds.available("toyset")  # the mirror has it
    root = ds.fetch("toyset", progress=False)
    assert root == toy.cache / "datasets" / "toyset" / "toyset"
    assert sorted(p.name for p in (root / "cat").iterdir()) == ["0.png", "1.png", "2.png",
                                                                "notes.txt"]
    marker = json.loads((root.parent / ".complete").read_text())
    assert marker["sha256"] == toy.spec.sha256 and marker["source"] == "archive"
    assert _leftovers(toy.cache) == ["toyset"]
    # Second call: served from the cache, no extraction, even with the mirror gone.
    monkeypatch.delenv("CBIR_DATA_MIRROR")
    assert ds.fetch("toyset", progress=False) == root
    assert ds.dataset_root("toyset") == root
    assert ds.available("toyset")
    assert len(calls) == 1


def test_load_index_toy(toy):
    df = ds.load_index("toyset", progress=False)
    assert list(df.columns) == list(ds.INDEX_COLUMNS)
    assert df["path"].tolist() == ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png"]
    assert df["label"].tolist() == [0, 0, 0, 1, 1] and df["label"].dtype == np.int64
    assert df["class_name"].tolist() == ["cat"] * 3 + ["dog"] * 2
    assert (df["split"] == "").all() and (df["group"] == "").all()
    pd.testing.assert_frame_equal(df, ds.load_index("toyset", progress=False))


def test_load_index_split_layout_and_natural_order(env):
    archive = _make_archive(env.mirror / "toysplit.tar.xz", folder="toysplit",
                            classes={"b": 11, "a": 1}, splits=["train", "test"])
    env.mp.setenv("CBIR_DATA_MIRROR", str(env.mirror))
    with ds.register(_spec(archive, name="toysplit", folder="toysplit")):
        df = ds.load_index("toysplit", progress=False)
    assert df["split"].value_counts().to_dict() == {"test": 12, "train": 12}
    assert dict(zip(df["class_name"], df["label"])) == {"a": 0, "b": 1}
    b_test = df.loc[(df["split"] == "test") & (df["class_name"] == "b"), "path"].tolist()
    assert b_test == [f"test/b/{i}.png" for i in range(11)]  # 2 before 10


def test_checksum_mismatch_in_mirror_caches_nothing(env):
    archive = _make_archive(env.mirror / "toyset.tar.xz")
    env.mp.setenv("CBIR_DATA_MIRROR", str(env.mirror))
    wrong = "0" * 64
    with ds.register(_spec(archive, sha=wrong)):
        with pytest.raises(ds.ChecksumError) as info:
            ds.fetch("toyset", progress=False)
        env.mp.delenv("CBIR_DATA_MIRROR")
        assert not ds.available("toyset")
    msg = str(info.value)
    assert str(archive) in msg and wrong in msg and sha256_file(archive) in msg
    assert info.value.expected == wrong and info.value.actual == sha256_file(archive)
    assert _leftovers(env.cache) == []


def test_missing_everywhere_names_variables_and_archive(env):
    archive = _make_archive(env.tmp / "elsewhere" / "toyset.tar.xz")
    with ds.register(_spec(archive)):
        assert not ds.available("toyset")
        with pytest.raises(ds.DatasetNotFoundError) as info:
            ds.fetch("toyset", progress=False)
        env.mp.setenv("CBIR_DATA_MIRROR", str(env.mirror))  # set, but without the archive
        with pytest.raises(FileNotFoundError) as info2:
            ds.load_index("toyset", progress=False)
    for err in (info.value, info2.value):
        msg = str(err)
        for needle in ("'toyset'", "toyset.tar.xz", "CBIR_CACHE", "CBIR_DATA_MIRROR",
                       "CBIR_DATA_URL", "https://example.invalid/toy", "toyset/<class>/<i>.png"):
            assert needle in msg, (needle, msg)
    assert str(env.mirror) in str(info2.value)
    assert _leftovers(env.cache) == []


def _evil_dotdot(tf):
    _add_file(tf, "toyset/../../evil.txt", b"x")


def _evil_absolute(tf):
    _add_file(tf, "/tmp/cbir-evil-absolute.txt", b"x")


def _evil_symlink(tf):
    info = tarfile.TarInfo("toyset/cat/link")
    info.type, info.linkname = tarfile.SYMTYPE, "../../../outside"
    tf.addfile(info)


def _evil_abs_symlink(tf):
    info = tarfile.TarInfo("toyset/cat/link")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tf.addfile(info)


def _evil_hardlink(tf):
    info = tarfile.TarInfo("toyset/cat/hard")
    info.type, info.linkname = tarfile.LNKTYPE, "../etc/passwd"
    tf.addfile(info)


def _evil_device(tf):
    info = tarfile.TarInfo("toyset/cat/dev")
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    tf.addfile(info)


def _evil_fifo(tf):
    info = tarfile.TarInfo("toyset/cat/fifo")
    info.type = tarfile.FIFOTYPE
    tf.addfile(info)


def _evil_outside_folder(tf):
    _add_file(tf, "other/evil.txt", b"x")


@pytest.mark.parametrize("evil", [_evil_dotdot, _evil_absolute, _evil_symlink, _evil_abs_symlink,
                                  _evil_hardlink, _evil_device, _evil_fifo, _evil_outside_folder],
                         ids=lambda f: f.__name__[6:])
def test_unsafe_archive_rejected_and_nothing_cached(env, evil):
    archive = _make_archive(env.mirror / "toyset.tar.xz", extra=(evil,))
    env.mp.setenv("CBIR_DATA_MIRROR", str(env.mirror))
    with ds.register(_spec(archive)):
        with pytest.raises(ds.UnsafeArchiveError, match="toyset.tar.xz"):
            ds.fetch("toyset", progress=False)
    assert _leftovers(env.cache) == []
    assert not (env.tmp / "evil.txt").exists() and not (env.cache / "evil.txt").exists()
    assert not Path("/tmp/cbir-evil-absolute.txt").exists()


def test_internal_symlink_is_allowed(env):
    def inner_link(tf):
        info = tarfile.TarInfo("toyset/cat/alias.png")
        info.type, info.linkname = tarfile.SYMTYPE, "0.png"
        tf.addfile(info)

    archive = _make_archive(env.mirror / "toyset.tar.xz", extra=(inner_link,))
    env.mp.setenv("CBIR_DATA_MIRROR", str(env.mirror))
    with ds.register(_spec(archive)):
        root = ds.fetch("toyset", progress=False)
    assert (root / "cat" / "alias.png").is_symlink()


def test_dot_prefixed_members_are_accepted(env):
    """Archives made with ``tar -C dir .`` hold ``./`` and ``./<folder>/...`` members."""
    src = env.tmp / "src" / "toyset" / "cat"
    src.mkdir(parents=True)
    (src / "0.png").write_bytes(_png_bytes(1))
    archive = env.mirror / "toyset.tar.xz"
    with tarfile.open(archive, "w:xz") as tf:
        tf.add(env.tmp / "src", arcname=".")
    env.mp.setenv("CBIR_DATA_MIRROR", str(env.mirror))
    with ds.register(_spec(archive)):
        assert ds.load_index("toyset", progress=False)["path"].tolist() == ["cat/0.png"]


def test_interrupted_extraction_leaves_no_cache(toy, monkeypatch):
    real_extract = tarfile.TarFile.extract
    count = []

    def flaky(self, *args, **kwargs):
        count.append(1)
        if len(count) > 4:
            raise KeyboardInterrupt("simulated kill")
        return real_extract(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", flaky)
    with pytest.raises(KeyboardInterrupt):
        ds.fetch("toyset", progress=False)
    assert _leftovers(toy.cache) == []
    monkeypatch.setattr(tarfile.TarFile, "extract", real_extract)
    monkeypatch.delenv("CBIR_DATA_MIRROR")
    assert not ds.available("toyset")
    monkeypatch.setenv("CBIR_DATA_MIRROR", str(toy.mirror))
    assert len(ds.load_index("toyset", progress=False)) == 5


def test_leftovers_without_marker_count_as_absent(toy, monkeypatch):
    base = toy.cache / "datasets"
    (base / "toyset" / "toyset" / "cat").mkdir(parents=True)  # half-unpacked, no marker
    stale = base / f".tmp-toyset-{DEAD_PID}-abc"  # from a killed process
    (stale / "toyset").mkdir(parents=True)
    monkeypatch.delenv("CBIR_DATA_MIRROR")
    assert not ds.available("toyset")
    with pytest.raises(ds.DatasetNotFoundError):
        ds.fetch("toyset", progress=False)
    monkeypatch.setenv("CBIR_DATA_MIRROR", str(toy.mirror))
    assert len(ds.load_index("toyset", progress=False)) == 5
    assert _leftovers(toy.cache) == ["toyset"]


def test_marker_for_another_sha_is_stale(toy, monkeypatch):
    root = ds.fetch("toyset", progress=False)
    marker = root.parent / ".complete"
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps({**data, "sha256": "f" * 64}))
    monkeypatch.delenv("CBIR_DATA_MIRROR")
    assert not ds.available("toyset")
    monkeypatch.setenv("CBIR_DATA_MIRROR", str(toy.mirror))
    ds.fetch("toyset", progress=False)
    assert json.loads(marker.read_text())["sha256"] == toy.spec.sha256


def test_killed_process_leaves_no_completed_cache(toy):
    """SIGKILL a real extraction mid-way: the next run must not trust what it left."""
    script = textwrap.dedent(f"""
        import sys, tarfile, time
        sys.path.insert(0, {str(REPO)!r})
        import cbirlib.datasets as ds
        ds.register(ds.DatasetSpec(name="toyset", archive="toyset.tar.xz",
                    sha256={toy.spec.sha256!r}, folder="toyset", description="toy",
                    stands_in_for="-", licence="-", source_url="https://example.invalid/"))
        real = tarfile.TarFile.extract
        def slow(self, *a, **k):
            real(self, *a, **k)
            print("extracting", flush=True)
            time.sleep(60)
        tarfile.TarFile.extract = slow
        ds.fetch("toyset", progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "CBIR_CACHE": str(toy.cache),
                                 "CBIR_DATA_MIRROR": str(toy.mirror)})
    try:
        assert proc.stdout.readline().strip() == "extracting"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    left = _leftovers(toy.cache)
    assert "toyset" not in left and any(name.startswith(".tmp-toyset-") for name in left)
    assert not (toy.cache / "datasets" / "toyset").exists()
    assert len(ds.load_index("toyset", progress=False)) == 5  # re-extracts and cleans up
    assert _leftovers(toy.cache) == ["toyset"]


# --------------------------------------------------------------------------- download


def test_download_from_url(env, http_files):
    archive = _make_archive(env.tmp / "srv" / "toyset.tar.xz")
    http_files.files["archives/toyset.tar.xz"] = archive.read_bytes()
    env.mp.setenv("CBIR_DATA_URL", http_files.url + "/")
    with ds.register(_spec(archive)):
        assert not ds.available("toyset")  # available() never downloads
        root = ds.fetch("toyset", progress=False)
        assert len(ds.load_index("toyset", progress=False)) == 5
    marker = json.loads((root.parent / ".complete").read_text())
    assert marker["origin"] == f"{http_files.url}/toyset.tar.xz"
    assert _leftovers(env.cache) == ["toyset"]  # no .part left


def test_corrupt_download_raises_checksum_error(env, http_files):
    archive = _make_archive(env.tmp / "srv" / "toyset.tar.xz")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    http_files.files["archives/toyset.tar.xz"] = bytes(data)
    env.mp.setenv("CBIR_DATA_URL", http_files.url)
    with ds.register(_spec(archive)):
        with pytest.raises(ds.ChecksumError) as info:
            ds.fetch("toyset", progress=False)
    assert f"{http_files.url}/toyset.tar.xz" in str(info.value)
    assert sha256_file(archive) in str(info.value)
    assert _leftovers(env.cache) == []


def test_download_404_is_dataset_not_found(env, http_files):
    archive = _make_archive(env.tmp / "srv" / "toyset.tar.xz")
    env.mp.setenv("CBIR_DATA_URL", http_files.url)
    with ds.register(_spec(archive)):
        with pytest.raises(ds.DatasetNotFoundError, match="404"):
            ds.fetch("toyset", progress=False)
    assert _leftovers(env.cache) == []


# --------------------------------------------------------------------------- builders


def test_digits_index(env):
    assert ds.available("digits")
    df = ds.load_index("digits", progress=False)
    assert len(df) == 1797 and list(df.columns) == list(ds.INDEX_COLUMNS)
    assert sorted(df["label"].unique()) == list(range(10))
    assert df.groupby("label")["class_name"].first().tolist()[:3] == ["zero", "one", "two"]
    assert df["path"].iloc[0] == "0_zero/0000.png"
    pd.testing.assert_frame_equal(df, ds.load_index("digits", progress=False))


def test_digits_pixels_match_sklearn_and_are_deterministic(env, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    df = ds.load_index("digits", progress=False)
    for i in (0, 5, 1796):
        row = df[df["path"].str.endswith(f"/{i:04d}.png")].iloc[0]
        assert row["label"] == digits.target[i]
        img = ds.load_image(ds.image_path("digits", row["path"]), mode="L")
        assert img.shape == (32, 32)
        expected = np.rint(digits.images[i] * 255 / 16).astype(np.uint8)
        np.testing.assert_array_equal(img[::4, ::4], expected)
    first = ds.dataset_root("digits")
    env.mp.setenv("CBIR_CACHE", str(tmp_path / "other-cache"))
    second = ds.dataset_root("digits")
    assert first != second
    for rel in df["path"].iloc[::300]:
        assert (first / rel).read_bytes() == (second / rel).read_bytes()


class _FakeCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10 (no download)."""

    def __init__(self, root, train, download):
        assert download
        n = 30 if train else 10
        rng = np.random.default_rng(1 if train else 2)
        self.data = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 10 for i in range(n)]
        self.classes = list(ds.CIFAR10_CLASSES)


def test_cifar10_torchvision_builder_writes_lossless_png(env):
    spec = dataclasses.replace(
        ds.REGISTRY["cifar10"], name="cifar10_tv",
        builder=functools.partial(ds._build_cifar10_torchvision, dataset_cls=_FakeCIFAR10))
    with ds.register(spec):
        df = ds.load_index("cifar10_tv", progress=False)  # no mirror, no URL: the builder
        root = ds.dataset_root("cifar10_tv")
    assert df["split"].value_counts().to_dict() == {"train": 30, "test": 10}
    assert df["path"].iloc[0] == "test/airplane/0000.png"
    fake = _FakeCIFAR10(None, True, True)
    img = ds.load_image(root / "train" / "bird" / "0001.png")  # second bird: index 12
    np.testing.assert_array_equal(img, fake.data[12])
    marker = json.loads((root.parent / ".complete").read_text())
    assert marker["source"] == "builder" and not (root.parent / ".download").exists()


def test_failing_builder_reports_in_not_found(env):
    def broken(dest, *, progress):
        raise OSError("no network")

    spec = dataclasses.replace(ds.REGISTRY["cifar10"], name="cifar10_off", builder=broken)
    with ds.register(spec):
        with pytest.raises(ds.DatasetNotFoundError, match="no network") as info:
            ds.fetch("cifar10_off", progress=False)
    assert "cifar.html" in str(info.value) and "cifar10.tar.xz" in str(info.value)
    assert _leftovers(env.cache) == []


# --------------------------------------------------------------------------- images


def test_load_image_modes_and_size(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (6, 4), (10, 20, 30)).save(path)
    rgb = ds.load_image(path)
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8 and tuple(rgb[0, 0]) == (10, 20, 30)
    assert ds.load_image(path, mode="L").shape == (4, 6)
    assert ds.load_image(path, size=8).shape == (8, 8, 3)
    assert ds.load_image(path, size=(3, 2), resample="nearest").shape == (2, 3, 3)
    assert ds.load_image(str(path), mode=None).shape == (4, 6, 3)


@pytest.mark.parametrize("content", [b"not an image at all", _png_bytes(5)[:40], None],
                         ids=["garbage", "truncated", "missing"])
def test_unreadable_image_raises_image_read_error(tmp_path, content):
    path = tmp_path / "broken.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ds.ImageReadError, match="broken.png") as info:
        ds.load_image(path)
    assert info.value.path == str(path) and isinstance(info.value, OSError)


def test_image_path_rejects_escapes(toy):
    assert ds.image_path("toyset", "cat/0.png") == ds.dataset_root("toyset") / "cat" / "0.png"
    for bad in ("../x.png", "/etc/passwd", "cat/../../x"):
        with pytest.raises(ValueError):
            ds.image_path("toyset", bad)


# --------------------------------------------------------------------------- real archives


def _mirror() -> Path | None:
    candidates = [os.environ.get("CBIR_DATA_MIRROR", ""), str(REPO.parent / "shared" / "data")]
    for c in candidates:
        if c and (Path(c) / "SHA256SUMS").is_file():
            return Path(c).resolve()
    return None


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory):
    env = os.environ.get("CBIR_CACHE", "").strip()
    return Path(env) if env else tmp_path_factory.mktemp("cbir-cache")


@pytest.fixture
def real(real_cache, monkeypatch):
    mirror = _mirror()
    if mirror is None:
        pytest.skip("dataset mirror absent: set CBIR_DATA_MIRROR or provide ../shared/data")
    monkeypatch.setenv("CBIR_CACHE", str(real_cache))
    monkeypatch.setenv("CBIR_DATA_MIRROR", str(mirror))
    monkeypatch.delenv("CBIR_DATA_URL", raising=False)
    return mirror


@functools.lru_cache(maxsize=None)
def _index(name: str, cache: str) -> pd.DataFrame:
    return ds.load_index(name, progress=False)


def _real_index(name: str) -> pd.DataFrame:
    return _index(name, os.environ["CBIR_CACHE"]).copy()


_slow = pytest.mark.slow
REAL_COUNTS = [
    pytest.param("corel1k", 1000, 10, {"": 1000}, 100, id="corel1k"),
    pytest.param("cifar10", 60000, 10, {"train": 50000, "test": 10000}, 6000, id="cifar10",
                 marks=_slow),
    pytest.param("medical_mnist", 12000, 6, {"": 12000}, 2000, id="medical_mnist"),
    pytest.param("gallbladder", 4546, 2, {"train": 3705, "test": 841}, None, id="gallbladder"),
    pytest.param("caltech101", 9145, 102, None, None, id="caltech101", marks=_slow),
    pytest.param("tiny_imagenet_val", 10000, 200, {"val": 10000}, 50, id="tiny_val"),
    pytest.param("tiny_imagenet_train", 20000, 200, {"train": 20000}, 100, id="tiny_train",
                 marks=_slow),
    pytest.param("paris6k", 250, 5, {"": 250}, 50, id="paris6k"),
]


@pytest.mark.data
@pytest.mark.parametrize("name, n, n_classes, splits, per_class", REAL_COUNTS)
def test_real_index_counts(real, name, n, n_classes, splits, per_class):
    df = _real_index(name)
    spec = ds.get_spec(name)
    assert len(df) == n == spec.n_images
    assert df["label"].nunique() == n_classes == spec.n_classes
    assert sorted(df["label"].unique()) == list(range(n_classes))
    assert df.groupby("label")["class_name"].nunique().eq(1).all()
    assert df["class_name"].nunique() == n_classes
    assert list(df.columns[:5]) == list(ds.INDEX_COLUMNS)
    assert not df["path"].duplicated().any()
    assert not df["path"].str.endswith((".md", ".txt", ".csv")).any()
    if splits is not None:
        assert df["split"].value_counts().to_dict() == splits
    if per_class is not None:
        assert df["label"].value_counts().eq(per_class).all()
    root = ds.dataset_root(name)
    first = ds.load_image(root / df["path"].iloc[0])
    assert first.dtype == np.uint8 and first.ndim == 3


@pytest.mark.data
def test_real_corel1k_label_is_number_div_100(real):
    df = _real_index("corel1k")
    numbers = df["path"].str.extract(r"/(\d+)\.jpg$")[0].astype(int)
    assert (numbers // 100 == df["label"]).all()
    assert df["class_name"].iloc[::100].tolist() == [
        "africa", "beach", "buildings", "buses", "dinosaurs", "elephants", "flowers", "horses",
        "mountains", "food"]


@pytest.mark.data
@pytest.mark.slow
def test_real_cifar10_classes_and_per_split_counts(real):
    df = _real_index("cifar10")
    assert df.groupby("label")["class_name"].first().tolist() == list(ds.CIFAR10_CLASSES)
    counts = df.groupby(["split", "class_name"]).size()
    assert counts["train"].eq(5000).all() and counts["test"].eq(1000).all()


@pytest.mark.data
def test_real_medical_mnist_classes(real):
    df = _real_index("medical_mnist")
    assert df.groupby("label")["class_name"].first().tolist() == [
        "AbdomenCT", "BreastMRI", "CXR", "ChestCT", "Hand", "HeadCT"]
    assert ds.load_image(ds.image_path("medical_mnist", df["path"].iloc[0]), mode="L").shape == (64, 64)


@pytest.mark.data
def test_real_gallbladder_groups_and_labels(real):
    df = _real_index("gallbladder")
    root = ds.dataset_root("gallbladder")
    assert (df["group"] != "").all()
    assert df.groupby("group")["split"].nunique().eq(1).all()
    assert df.groupby("group")["label"].nunique().eq(1).all()
    patients = df.groupby(["split", "label"])["group"].nunique().to_dict()
    assert patients == {("train", 0): 330, ("train", 1): 811, ("test", 0): 102, ("test", 1): 196}
    assert df.groupby("label")["class_name"].first().tolist() == ["BA", "nonBA"]
    for split in ("train", "test"):
        csv = pd.read_csv(root / f"{split}_label.csv", header=None, names=["file", "label"])
        part = df[df["split"] == split]
        got = dict(zip(part["path"].str.rsplit("/", n=1).str[-1], part["label"]))
        assert got == dict(zip(csv["file"], csv["label"]))


@pytest.mark.data
@pytest.mark.slow
def test_real_caltech101_background_class(real):
    df = _real_index("caltech101")
    counts = df["class_name"].value_counts()
    assert counts["BACKGROUND_Google"] == 468 and counts.drop("BACKGROUND_Google").sum() == 8677
    assert "BACKGROUND_Google/tmp.jpg" in set(df["path"])


@pytest.mark.data
@pytest.mark.slow
def test_real_tiny_imagenet_val_and_train_share_labels(real):
    val, train = _real_index("tiny_imagenet_val"), _real_index("tiny_imagenet_train")
    assert dict(zip(val["wnid"], val["label"])) == dict(zip(train["wnid"], train["label"]))
    goldfish = val[val["wnid"] == "n01443537"]
    assert goldfish["class_name"].iloc[0] == "goldfish, Carassius auratus"
    assert goldfish["label"].iloc[0] == 0
    assert ds.load_image(ds.image_path("tiny_imagenet_val", goldfish["path"].iloc[0])).shape == (64, 64, 3)


@pytest.mark.data
def test_real_paris6k_ground_truth(real):
    df = _real_index("paris6k")
    assert df.groupby("label")["class_name"].first().tolist() == [
        "defense", "eiffel_tower", "invalides", "louvre", "moulinrouge"]
    gt = ds.paris6k_ground_truth(progress=False)
    assert gt["query"].tolist() == [
        "defense_4", "defense_5", "eiffel_3", "invalides_2", "invalides_5", "louvre_1",
        "louvre_2", "louvre_3", "louvre_4", "moulinrouge_2", "moulinrouge_5", "triomphe_5"]
    paths = set(df["path"])
    root = ds.dataset_root("paris6k")
    for row in gt.itertuples():
        assert row.path in paths and row.path in set(df.loc[df["query_of"] != "", "path"])
        assert (row.good | row.ok | row.junk) <= paths and (row.good | row.ok)
        w, h = Image.open(root / row.path).size
        x1, y1, x2, y2 = row.bbox_staged
        assert 0 <= x1 < x2 <= w + 1 and 0 <= y1 < y2 <= h + 1
    assert len(gt.loc[gt["query"] == "louvre_1", "ok"].iloc[0]) == 39
    everything = ds.paris6k_ground_truth(require_query_image=False, progress=False)
    assert len(everything) == 30 and set(gt["query"]) < set(everything["query"])
    assert (everything.loc[everything["path"] == "", "bbox_staged"].isna()).all()

"""User-supplied hashing benchmarks (NUS-WIDE, MS-COCO, ImageNet, MNIST) from list files."""

import numpy as np
import pytest

from cbirlib import hashlists, metrics


def _write(folder, rows_by_role):
    folder.mkdir(parents=True)
    for role, rows in rows_by_role.items():
        (folder / f"{role}.txt").write_text("".join(f"{p} {lab}\n" for p, lab in rows))


def _multi(*on, n=21):
    return " ".join("1" if i in on else "0" for i in range(n))


def test_multi_label_lists_are_read_and_feed_the_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_HASHING_LISTS", str(tmp_path))
    _write(tmp_path / "nus_wide", {
        "train": [("img/a.jpg", _multi(0, 3))],
        "test": [("img/q.jpg", _multi(3)), ("img/r.jpg", _multi(20))],
        "database": [("img/a.jpg", _multi(0, 3)), ("/abs/b.jpg", _multi(1)), ("img/c.jpg", _multi(20, 3))],
    })
    lists = hashlists.load_hashing_lists("NUS-WIDE", check_images=False)
    assert {k: len(v) for k, v in lists.items()} == {"train": 1, "test": 2, "database": 3}
    db = lists["database"]
    assert db.labels.shape == (3, 21) and db.labels.dtype == np.int8
    assert db.paths[0] == str(tmp_path / "nus_wide" / "img/a.jpg") and db.paths[1] == "/abs/b.jpg"
    rel = metrics.relevance_matrix(lists["test"].labels, db.labels)
    np.testing.assert_array_equal(rel, [[True, False, True], [False, False, True]])
    assert hashlists.available_hashing_benchmarks() == ["NUS-WIDE"]


def test_single_class_lines_are_one_hot(tmp_path):
    _write(tmp_path / "mnist", {r: [("x.png", "7"), ("y.png", "0")] for r in ("train", "test", "database")})
    lists = hashlists.load_hashing_lists("MNIST", root=tmp_path, check_images=False)
    np.testing.assert_array_equal(lists["test"].labels.argmax(1), [7, 0])
    assert lists["test"].labels.sum() == 2


def test_errors_name_the_file_line_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.txt.*DeepHash-pytorch layout"):
        hashlists.load_hashing_lists("MS-COCO", root=tmp_path)
    _write(tmp_path / "mnist", {"train": [("x.png", "3")], "test": [("x.png", "12")],
                                "database": [("x.png", "3")]})
    with pytest.raises(ValueError, match=r"test.txt, line 1: class 12 outside 0..9"):
        hashlists.load_hashing_lists("MNIST", root=tmp_path, check_images=False)
    (tmp_path / "mnist" / "test.txt").write_text("x.png 1 0 1\n")
    with pytest.raises(ValueError, match="line 1: expected one class index or 10"):
        hashlists.load_hashing_lists("MNIST", root=tmp_path, check_images=False)
    (tmp_path / "mnist" / "test.txt").write_text("x.png 3\n")
    with pytest.raises(FileNotFoundError, match="train.txt, line 1: image .*x.png does not exist"):
        hashlists.load_hashing_lists("MNIST", root=tmp_path)
    with pytest.raises(KeyError, match="unknown hashing benchmark"):
        hashlists.load_hashing_lists("SVHN", root=tmp_path)


@pytest.mark.parametrize("method", ["DPSH", "DSDH"])
def test_deep_heads_train_on_multi_label_indicators(method):
    from cbirlib import deephash

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(60, 5)).astype(np.int8)
    labels[labels.sum(1) == 0, 0] = 1
    X = (labels @ rng.normal(size=(5, 16)) + 0.1 * rng.normal(size=(60, 16))).astype(np.float32)
    head = deephash.make_method(method, n_bits=8, seed=0, epochs=3).fit(X, labels)
    codes = head.encode(X)
    assert codes.shape == (60, 8) and set(np.unique(codes)) <= {-1, 1}

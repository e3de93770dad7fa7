import gzip
import json
import pickle

import numpy as np
import pytest
import torch

from cnnlab.core.errors import ConfigError, DataError
from cnnlab.data import mnist
from cnnlab.data.prepared import Split, load_prepared, write_prepared


def idx_bytes(array: np.ndarray) -> bytes:
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder, n_train=12, n_test=6, gz=False, labels_range=10):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, labels_range, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, labels_range, n_test),
    }
    folder.mkdir(exist_ok=True)
    for key, stem in mnist.IDX_FILES.items():
        raw = idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trips(tmp_path, gz):
    arrays = write_idx_folder(tmp_path / "idx", gz=gz)
    data = mnist.read_idx_folder(tmp_path / "idx")
    np.testing.assert_array_equal(data["train"][0], arrays["train_images"])
    np.testing.assert_array_equal(data["test"][1], arrays["test_labels"])


def test_missing_file_is_named(tmp_path):
    write_idx_folder(tmp_path / "idx")
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*missing"):
        mnist.read_idx_folder(tmp_path / "idx")


def test_wrong_magic_number(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros((3, 28, 28))))  # an images file where labels belong
    with pytest.raises(DataError, match=f"{path}.*wrong magic number 0x00000803"):
        mnist.read_idx(path, 1)


@pytest.mark.parametrize(("cut", "message"), [(-5, "truncated"), (6, "truncated IDX header")])
def test_truncated_idx(tmp_path, cut, message):
    raw = idx_bytes(np.zeros((4, 28, 28)))
    path = tmp_path / "images"
    path.write_bytes(raw[:cut])
    with pytest.raises(DataError, match=f"{path}.*{message}"):
        mnist.read_idx(path, 3)


def test_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(4)) + b"\x00")
    with pytest.raises(DataError, match="trailing bytes"):
        mnist.read_idx(path, 1)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28))))[:30])
    with pytest.raises(DataError, match=f"{path}.*corrupt or truncated gzip"):
        mnist.read_idx(path, 3)


def test_counts_that_disagree(tmp_path):
    write_idx_folder(tmp_path / "idx")
    (tmp_path / "idx" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(11)))
    with pytest.raises(DataError, match="12 images but .*11 labels"):
        mnist.read_idx_folder(tmp_path / "idx")


def test_labels_out_of_range(tmp_path):
    write_idx_folder(tmp_path / "idx", labels_range=12)
    arrays = mnist.read_idx_folder(tmp_path / "idx")
    with pytest.raises(DataError, match="labels must be digits 0-9"):
        mnist.make_splits(arrays, val_size=2, seed=0)


def test_val_is_carved_deterministically_and_disjointly(tmp_path):
    write_idx_folder(tmp_path / "idx", n_train=40)
    arrays = mnist.read_idx_folder(tmp_path / "idx")
    a = mnist.make_splits(arrays, val_size=10, seed=3)
    b = mnist.make_splits(arrays, val_size=10, seed=3)
    c = mnist.make_splits(arrays, val_size=10, seed=4)
    assert (a["val"].x == b["val"].x).all() and len(a["val"]) == 10 and len(a["train"]) == 30
    assert not (a["val"].x == c["val"].x).all()
    train_rows = {bytes(r) for r in a["train"].x.numpy()}
    assert not any(bytes(r) in train_rows for r in a["val"].x.numpy())


def test_bad_val_size_is_a_config_error(tmp_path):
    write_idx_folder(tmp_path / "idx")
    with pytest.raises(ConfigError, match="val_size"):
        mnist.make_splits(mnist.read_idx_folder(tmp_path / "idx"), val_size=12, seed=0)


def write_pickle(path, parts):
    with gzip.open(path, "wb") as f:
        pickle.dump(parts, f)


def test_pickle_reader_joins_train_and_val(tmp_path):
    rng = np.random.default_rng(0)
    part = lambda n: (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256,  # noqa: E731
                      rng.integers(0, 10, n))
    tr, va, te = part(5), part(3), part(2)
    write_pickle(tmp_path / "m.pkl.gz", (tr, va, te))
    data = mnist.read_pickle(tmp_path / "m.pkl.gz")
    assert data["train"][0].shape == (8, 28, 28) and data["train"][0].dtype == np.uint8
    np.testing.assert_array_equal(data["train"][0][5:].reshape(3, 784), np.rint(va[0] * 256))


@pytest.mark.parametrize(("content", "message"), [
    (b"not a gzip at all", "corrupt or truncated pickle"),
    (None, "corrupt or truncated pickle"),  # truncated gzip of a valid pickle
    ("wrong-structure", "expected \\(\\(x, y\\)"),
])
def test_corrupt_pickle_is_named(tmp_path, content, message):
    path = tmp_path / "m.pkl.gz"
    if content is None:
        write_pickle(path, ((np.zeros((5, 784)), np.zeros(5)),) * 3)
        path.write_bytes(path.read_bytes()[:-40])
    elif content == "wrong-structure":
        write_pickle(path, {"train": 1})
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=f"{path}.*{message}"):
        mnist.read_pickle(path)


def test_bundled_digits_are_the_official_sets(bundled_mnist):
    data, provenance = bundled_mnist  # read_pickle of mnist.bundled_path(), its sha256 checked
    assert provenance["source"] == "bundled"
    assert data["train"][0].shape == (60_000, 28, 28)
    assert np.bincount(data["test"][1]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                      974, 1009]


def test_unknown_source_is_a_config_error():
    with pytest.raises(ConfigError, match="data.mnist.source='s3'"):
        mnist.load_source({"source": "s3"})


# ------------------------------------------------------- prepared data ----
def write_tiny_prepared(out):
    out.mkdir()
    split = Split(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.tensor([0, 1, 2, 3]))
    write_prepared(out, {"train": split, "val": split, "test": split},
                   {"dataset": "mnist", "classes": mnist.CLASSES, "input_shape": [1, 28, 28]})
    return out


def test_prepared_file_altered_but_parseable_is_named(tmp_path):
    out = write_tiny_prepared(tmp_path / "mnist")
    assert load_prepared(out).test.y.tolist() == [0, 1, 2, 3]
    torch.save({"x": torch.zeros(4, 1, 28, 28, dtype=torch.uint8), "y": torch.tensor([3, 2, 1, 0])},
               out / "test.pt")
    with pytest.raises(DataError, match=f"^{out / 'test.pt'}: sha256 does not match manifest.json"):
        load_prepared(out)


def test_prepared_data_without_hashes_loads_unchecked(tmp_path):
    """Data prepared before the manifest recorded sha256s still loads."""
    out = write_tiny_prepared(tmp_path / "mnist")
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["files"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    torch.save({"x": torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "y": torch.tensor([5, 6])},
               out / "val.pt")
    assert load_prepared(out).val.y.tolist() == [5, 6]


@pytest.mark.parametrize(("manifest", "message"), [
    (b"{not json", "manifest is not readable JSON"),
    (b'["a", "list"]', "not a prepared-data manifest"),
])
def test_unreadable_prepared_manifest_is_named(tmp_path, manifest, message):
    out = write_tiny_prepared(tmp_path / "mnist")
    (out / "manifest.json").write_bytes(manifest)
    with pytest.raises(DataError, match=f"{out / 'manifest.json'}: {message}"):
        load_prepared(out)


def test_prepared_file_the_manifest_does_not_list_is_an_error(tmp_path):
    out = write_tiny_prepared(tmp_path / "mnist")
    torch.save({"vectors": torch.zeros(3)}, out / "extras.pt")
    with pytest.raises(DataError, match=f"{out / 'extras.pt'}: not listed in manifest.json"):
        load_prepared(out)

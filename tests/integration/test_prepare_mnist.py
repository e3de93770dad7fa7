"""The prepare_mnist stage as users run it: sources, manifest, clean errors, atomic outputs."""

import hashlib
import http.server
import json
import threading
from functools import partial

import pytest
import torch

from cnnlab.core.errors import DataError
from cnnlab.data import mnist
from tests.stages import run_script, run_stage
from tests.unit.test_mnist_readers import write_idx_folder


def test_idx_source_writes_splits_and_manifest(tmp_path):
    arrays = write_idx_folder(tmp_path / "idx", n_train=30, n_test=8)
    run_stage("prepare_mnist", "data.mnist.source=idx", f"data.mnist.idx_dir={tmp_path / 'idx'}",
              "data.mnist.val_size=5", f"paths.prepared={tmp_path / 'out'}",
              f"paths.metrics={tmp_path / 'metrics'}")
    out = tmp_path / "out" / "mnist"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sizes"] == {"train": 25, "val": 5, "test": 8}
    assert manifest["counts"]["test"] == {
        str(d): int((arrays["test_labels"] == d).sum()) for d in range(10)}
    test = torch.load(out / "test.pt", weights_only=True)
    assert test["x"].dtype == torch.uint8 and test["x"].shape == (8, 1, 28, 28)
    assert test["y"].tolist() == arrays["test_labels"].tolist()
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest


def test_bad_input_is_one_clear_line_and_keeps_earlier_outputs(tmp_path, capsys):
    write_idx_folder(tmp_path / "idx")
    args = ["data.mnist.source=idx", f"data.mnist.idx_dir={tmp_path / 'idx'}",
            "data.mnist.val_size=2", f"paths.prepared={tmp_path / 'out'}",
            f"paths.metrics={tmp_path / 'metrics'}"]
    run_stage("prepare_mnist", *args)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out" / "mnist").iterdir()}
    bad = tmp_path / "idx" / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    capsys.readouterr()
    code = run_script("prepare_mnist", *args)
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {bad}: truncated" in err
    assert "Traceback" not in err
    after = {p.name: p.read_bytes() for p in (tmp_path / "out" / "mnist").iterdir()}
    assert after == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mnist"]  # no temp dirs left


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving gzipped IDX files, like an MNIST mirror."""
    folder = tmp_path / "mirror"
    write_idx_folder(folder, gz=True)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    yield f"http://127.0.0.1:{server.server_address[1]}", md5, folder
    server.shutdown()


def test_download_verifies_md5_and_reads_idx(tmp_path, mirror):
    url, md5, folder = mirror
    arrays, provenance = mnist.load_source({"source": "download", "base_url": url, "md5": md5,
                                            "download_dir": str(tmp_path / "raw")})
    assert arrays["train"][0].shape == (12, 28, 28)
    assert provenance == {"source": "download", "base_url": url}
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(md5)


def test_download_with_wrong_md5_fails_and_leaves_nothing(tmp_path, mirror):
    url, md5, _ = mirror
    md5["train-labels-idx1-ubyte.gz"] = "0" * 32
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: md5 .* does not match"):
        mnist.download(url, tmp_path / "raw", md5)
    assert not (tmp_path / "raw" / "train-labels-idx1-ubyte.gz").exists()


def test_download_from_a_dead_server_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="127.0.0.1:9/.*download failed"):
        mnist.download("http://127.0.0.1:9", tmp_path, {"x.gz": "0" * 32}, timeout=5)

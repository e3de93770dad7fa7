"""Stage prepare_text: sentences -> data/prepared/text/ (token ids, GloVe vectors, vocab.txt)."""

from cnnlab.core.stage import StageContext, StageResult, stage
from cnnlab.data import text
from cnnlab.data.prepared import write_prepared


@stage("prepare_text", section="data.text", schema=text.TextConfig, experiment="data")
def main(cfg: dict, ctx: StageContext) -> StageResult:
    prepared = text.prepare_text(cfg)
    out = ctx.paths.prepared / "text"
    folder = ctx.out_dir(out)
    text.write_vocab(folder / "vocab.txt", prepared.vocab)
    manifest = write_prepared(folder, prepared.splits, prepared.manifest, prepared.extras)
    coverage = manifest["vectors"]["coverage"]
    return StageResult({"sizes": manifest["sizes"], "vocab_size": manifest["vocab_size"],
                        "glove_coverage": coverage}, summary=[
        f"prepare_text: {manifest['sizes']} vocab={manifest['vocab_size']} glove coverage: "
        f"{coverage['vocab']:.1%} of words, {coverage['tokens']:.1%} of tokens -> {out}"])


if __name__ == "__main__":
    main()

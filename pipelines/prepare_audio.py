"""Stage prepare_audio: spoken words -> data/prepared/<dataset>/ spectrograms + manifest.json.

Offline default: eSpeak NG voices (`data.audio.source=synthetic`). Real recordings:
    python pipelines/prepare_audio.py data.audio.source=folder \
        data.audio.folder=../shared/datasets/fsdd/recordings data.audio.split.by=take
"""

from cnnlab.core.stage import StageContext, StageResult, stage
from cnnlab.data.audio.prepare import AudioConfig, build, write_dataset


@stage("prepare_audio", section="data.audio", schema=AudioConfig, experiment="data")
def main(cfg: dict, ctx: StageContext) -> StageResult:
    out = ctx.paths.prepared / cfg["dataset"]
    manifest = write_dataset(build(cfg), ctx.out_dir(out))  # a bad input stops before any output
    skipped = manifest.get("skipped", {}).get("count", 0)
    return StageResult({"sizes": manifest["sizes"], "skipped": skipped}, summary=[
        f"prepare_audio: {manifest['source']} {manifest['sizes']} x {manifest['input_shape']}"
        f"{f', skipped {skipped} bad files' if skipped else ''} -> {out}"])


if __name__ == "__main__":
    main()

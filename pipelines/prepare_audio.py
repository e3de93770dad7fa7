"""Stage prepare_audio: spoken words -> data/prepared/<dataset>/ spectrograms + manifest.json.

Offline default: eSpeak NG voices (`data.audio.source=synthetic`). Real recordings:
    python pipelines/prepare_audio.py data.audio.source=folder \
        data.audio.folder=../shared/datasets/fsdd/recordings data.audio.split.by=take
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.data import audio


@stage
def main(cfg) -> None:
    data_cfg = plain(cfg.data.audio)
    out = Path(cfg.paths.prepared) / str(data_cfg.get("dataset", "audio"))
    manifest = audio.prepare(data_cfg, out)
    skipped = manifest.get("skipped", {}).get("count", 0)
    print(f"prepare_audio: {manifest['source']} {manifest['sizes']} x {manifest['input_shape']}"
          f"{f', skipped {skipped} bad files' if skipped else ''} -> {out}")


if __name__ == "__main__":
    main()

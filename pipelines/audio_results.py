"""Stage audio_results: metrics/audio_*.json -> reports/audio/{results.md,results.json,claims.json}.

On another prepared dataset (e.g. FSDD) point it at that run's folders:
    python pipelines/audio_results.py paths.metrics=metrics/fsdd_take \
        paths.reports=reports/fsdd_take data.audio.dataset=fsdd_take
"""

from pathlib import Path

from _entry import stage

from cnnlab.core import tracking
from cnnlab.analysis import speech


@stage
def main(cfg) -> None:
    paths = cfg.paths
    dataset = str(cfg.data.audio.dataset)
    results = speech.write_speech_results(Path(paths.metrics),
                                          Path(paths.prepared) / dataset / "manifest.json",
                                          Path(paths.reports) / "audio")
    tracking.log_stage("audio_results", f"audio_results {dataset}",
                       params={"experiments": [e.name for e in speech.EXPERIMENTS],
                               "dataset": dataset, "metrics": str(paths.metrics)},
                       metrics={f"{r['experiment']}.test_acc":
                                r["test acc %"] / 100 for r in results.rows},
                       artifacts=results.files)
    for claim in results.claims:
        print(f"audio_results: holds={claim.holds}: {claim.evidence}")


if __name__ == "__main__":
    main()

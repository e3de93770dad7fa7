"""Stage text_results: metrics/text_*.json -> reports/text/{results.md,results.json,claims.json}."""

from pathlib import Path

from _entry import stage

from cnnlab.core import tracking
from cnnlab.analysis import sentences


@stage
def main(cfg) -> None:
    paths = cfg.paths
    results = sentences.write_text_results(Path(paths.metrics),
                                           Path(paths.prepared) / "text" / "manifest.json",
                                           Path(paths.reports) / "text")
    tracking.log_stage("text_results", "text_results",
                       params={"experiments": [e.name for e in sentences.EXPERIMENTS],
                               "target_acc": sentences.TARGET_ACC},
                       metrics={f"{r['experiment']}.test_acc": r["test acc %"] / 100
                                for r in results.rows},
                       artifacts=results.files)
    for claim in results.claims:
        print(f"text_results: holds={claim.holds}: {claim.evidence}")


if __name__ == "__main__":
    main()

"""Stage report (the last): every claims.json and training metric -> reports/report.{md,html}.

DVC: python pipelines/report.py --config-dir . --config-name params
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.analysis.report import run_report


@stage
def main(cfg) -> None:
    paths = cfg.paths
    result = run_report(plain(cfg.analysis.report), Path(paths.reports), Path(paths.metrics),
                        Path(paths.plots))
    print(f"report: {result['hold']} of {result['claims']} claims hold, {result['fail']} fail, "
          f"{result['topics_not_run']} topics not run -> {Path(paths.reports) / 'report.html'}")


if __name__ == "__main__":
    main()

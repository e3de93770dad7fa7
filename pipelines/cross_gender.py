"""Stage cross_gender: the compared speech models trained on one gender, tested on the other.

DVC:  python pipelines/cross_gender.py --config-dir . --config-name params
Writes metrics/cross_gender.json; audio_results turns it into the cross-gender claim.
"""

from cnnlab.analysis.gender import DIRECTIONS, CrossGenderConfig, cross_gender
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("cross_gender", section="analysis.cross_gender", schema=CrossGenderConfig,
       reads=lambda cfg, config: [f"train.{name}" for name in cfg["experiments"]])
def main(cfg: dict, ctx: StageContext) -> StageResult:
    result = cross_gender(cfg, ctx.root["train"], ctx.paths.prepared / cfg["dataset"])
    summary = [f"cross_gender: not measured: {result['reason']}"] if not result["measured"] else [
        f"cross_gender {direction}: {name} test_acc "
        f"{', '.join(f'{a:.4f}' for a in r['test_acc'])}"
        for direction in DIRECTIONS for name, r in result[direction].items()]
    return StageResult(result, summary=summary)


if __name__ == "__main__":
    main()

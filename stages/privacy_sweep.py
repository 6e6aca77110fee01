"""The privacy-utility sweep: each family at epsilon in {1, 3, 10, inf}, through DVC's queue.

Not a DVC stage: `make privacy-sweep` runs it. For each family it queues one experiment per
target epsilon, `dvc exp run --queue evaluate@FAMILY -S train.FAMILY.privacy.epsilon=0,1,3,10`
(0 = not private, the "inf" point), each with `profile`'s overrides (`--steps` and `--samples`:
a shorter run and fewer samples than the default's, so the eight runs fit in about 40 minutes on
a 2-core CPU; every point of a family has the same budget, so the curve compares like with
like), runs the queue with `--jobs` workers, then collects every experiment of the commit from
`dvc exp show --json` (aigc/experiments.py) into `--out` (metrics/privacy_sweep.json: one row
per point, with its name for `dvc exp apply`) and `--markdown` (reports/privacy.md). The report
stage shows the table beside the default models'. `--collect-only` skips the queue and re-reads
what ran.

    python -m stages.privacy_sweep                         # vae and dcgan, one worker
    python -m stages.privacy_sweep --families vae --epsilons 0 2 8 --steps 1000 --jobs 2
    python -m stages.privacy_sweep --collect-only
"""

from __future__ import annotations

import argparse
import dataclasses

from aigc.errors import exit_on_error
from aigc.experiments import (
    ExperimentError,
    add_sweep_arguments,
    collect,
    dvc_exp_show_json,
    explain_failures,
    queue_grid,
    run_queue,
)
from aigc.files import write_json, write_text
from aigc.models import MODELS
from aigc.privacy_report import privacy_markdown, privacy_rows

FAMILIES = ["vae", "dcgan"]
EPSILONS = [0, 1, 3, 10]  # target epsilon per point; 0 = trained without DP-SGD
# The sweep's budget, the same at every point (about a tenth of the default run's steps).
STEPS, SAMPLES = 600, 2000


def profile(family: str, steps: int, samples: int) -> dict:
    """The `-S` overrides of every point of `family`'s curve; an experiment belongs to the
    curve when it carries these values. A VAE samples N(0, I) at every point: its mixture
    prior is fitted to the training codes outside DP-SGD's accounting."""
    overrides = {f"train.{family}.steps": steps, "sample.num_samples": samples}
    if "prior_components" in {field.name for field in dataclasses.fields(MODELS[family].Config)}:
        overrides[f"train.{family}.prior_components"] = 0
    return overrides


METRICS = [
    "fid", "fid_se", "precision", "recall", "coverage", "classes_covered",
    "membership_auc", "membership_tpr_at_fpr", "membership_attack", "privacy_epsilon",
]  # fmt: skip
TRAINING = ["train_seconds", "privacy_noise_multiplier", "privacy_sample_rate"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    private = [family for family in MODELS if not MODELS[family].Config.cannot_train_privately]
    parser.add_argument("--families", nargs="+", default=FAMILIES, choices=private)
    parser.add_argument("--epsilons", nargs="+", type=float, default=EPSILONS,
                        help="target epsilons (0 = without DP-SGD)")  # fmt: skip
    add_sweep_arguments(parser, STEPS, SAMPLES)
    parser.add_argument("--out", default="metrics/privacy_sweep.json")
    parser.add_argument("--markdown", default="reports/privacy.md")
    args = parser.parse_args(argv)

    profiles = {family: profile(family, args.steps, args.samples) for family in args.families}
    epsilons = [int(e) if float(e).is_integer() else e for e in args.epsilons]  # as typed
    with exit_on_error(ExperimentError):
        if not args.collect_only:
            for family in args.families:
                grid = {f"train.{family}.privacy.epsilon": epsilons}
                print(queue_grid([f"evaluate@{family}"], grid, profiles[family]), end="")
            run_queue(args.jobs)
        shown = dvc_exp_show_json()

    rows = []
    for family in args.families:
        experiments = collect(
            shown,
            params=[f"train.{family}.privacy.epsilon", *profiles[family]],
            metrics=[f"metrics/{family}.json:{key}" for key in METRICS]
            + [f"logs/{family}/metrics.json:{key}" for key in TRAINING],
        )
        rows += privacy_rows(family, explain_failures(experiments), profiles[family])
    with exit_on_error():
        write_json(args.out, rows)
        write_text(args.markdown, privacy_markdown(rows) + "\n")
    print(privacy_markdown(rows))


if __name__ == "__main__":
    main()

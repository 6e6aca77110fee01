"""The privacy-utility sweep: each family at epsilon in {1, 3, 10, inf}, through DVC's queue.

Not a DVC stage: `make privacy-sweep` runs it. For each family it queues one experiment per
target epsilon, `dvc exp run --queue evaluate@FAMILY -S train.FAMILY.privacy.epsilon=0,1,3,10`
(0 = not private, the "inf" point), each with PROFILE's overrides (a shorter run and fewer
samples, so the eight runs fit in about an hour and a half on a 2-core CPU; every point of a
family has the same budget, so the curve compares like with like), runs the queue with
`--jobs` workers, then collects every experiment of the commit from `dvc exp show --json`
(aigc/experiments.py) into `--out` (metrics/privacy_sweep.json: one row per point, with its
name for `dvc exp apply`) and `--markdown` (reports/privacy.md). The report stage shows the
table beside the default models'. `--collect-only` skips the queue and re-reads what ran.

    python -m stages.privacy_sweep                         # vae and dcgan, one worker
    python -m stages.privacy_sweep --families vae --jobs 2
    python -m stages.privacy_sweep --collect-only
"""

from __future__ import annotations

import argparse

from aigc.errors import exit_on_error
from aigc.experiments import ExperimentError, collect, dvc_exp_show_json, queue_grid, run_queue
from aigc.files import write_json, write_text
from aigc.privacy_report import privacy_markdown, privacy_rows

EPSILONS = [0, 1, 3, 10]  # target epsilon per point; 0 = trained without DP-SGD
# The sweep's budget per family, the same at every point (a tenth of the default run's steps);
# an experiment belongs to a family's curve when it carries these values.
PROFILES = {
    "vae": {"train.vae.steps": 600, "sample.num_samples": 2000},
    "dcgan": {"train.dcgan.steps": 600, "sample.num_samples": 2000},
}
METRICS = [
    "fid", "fid_se", "precision", "recall", "coverage", "classes_covered",
    "membership_auc", "membership_tpr_at_fpr", "membership_attack", "privacy_epsilon",
]  # fmt: skip
TRAINING = ["train_seconds", "privacy_noise_multiplier", "privacy_sample_rate"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--jobs", type=int, default=1, help="queue workers (dvc queue start -j)")
    parser.add_argument("--collect-only", action="store_true", help="skip queueing and running")
    parser.add_argument("--out", default="metrics/privacy_sweep.json")
    parser.add_argument("--markdown", default="reports/privacy.md")
    args = parser.parse_args(argv)

    with exit_on_error(ExperimentError):
        if not args.collect_only:
            for family in args.families:
                grid = {f"train.{family}.privacy.epsilon": EPSILONS}
                print(queue_grid([f"evaluate@{family}"], grid, PROFILES[family]), end="")
            run_queue(args.jobs)
        shown = dvc_exp_show_json()

    rows = []
    for family in args.families:
        experiments = collect(
            shown,
            params=[f"train.{family}.privacy.epsilon", *PROFILES[family]],
            metrics=[f"metrics/{family}.json:{key}" for key in METRICS]
            + [f"logs/{family}/metrics.json:{key}" for key in TRAINING],
        )
        rows += privacy_rows(family, experiments, PROFILES[family])
    with exit_on_error():
        write_json(args.out, rows)
        write_text(args.markdown, privacy_markdown(rows) + "\n")
    print(privacy_markdown(rows))


if __name__ == "__main__":
    main()

"""The data sweep: how data quantity, data quality and the cleaner move sample quality, run
through DVC's own experiment queue.

Not a DVC stage: `make sweep` runs it. It queues, for the families named (their `evaluate@F`
stages and everything upstream of them):

- the quantity grid, one experiment per `--fractions` value:
  `dvc exp run --queue -S split.train_fraction=0.01,0.05,0.25,1`;
- the quality grid: at each of `--levels`, every kind of corruption at once (label flips,
  broken files and duplicates, each at that share), with the cleaner on and off
  (`-S degrade.clean=true,false`); and, at `--kind-level`, each kind alone (label flips with
  the cleaner on only: it cannot see them), so that each kind's cost can be read apart;
- the seeds grid: the reference point (all the data, uncorrupted) again at `--seeds` training
  seeds, so each curve can be read against the seed-to-seed spread of the same budget;
- on request (`--grids augmentation`), the augmentation grid: `augment.copies` over
  `--copies`, and for the GAN families DiffAugment (translation and cutout, Zhao et al. 2020)
  in the discriminator at copies 0 and 1;

each with the profile's overrides (aigc/data_sweep.py): a short budget and fewer samples, the
same at every point, so the default grids (17 experiments) run in about an hour with two
one-thread workers on a 2-core CPU. It runs the queue with `--jobs` workers, collects every
experiment of the commit from `dvc exp show --json` (aigc/experiments.py) into `--out`
(metrics/sweep.json), and writes reports/experiments.md (with each grid's curves beside it as
experiments_GRID.png) and reports/experiments.html (aigc/sweep_report.py). A point that fails (a
bad value, a NaN loss) is a row with its error; the rest of the sweep runs on. `--collect-only`
skips the queue and re-reads what ran.

    python -m stages.sweep                                    # the default grids, dcgan and vae
    python -m stages.sweep --grids quantity --families vae --fractions 0.05 0.5 1 --jobs 2
    python -m stages.sweep --collect-only
"""

from __future__ import annotations

import argparse

from aigc.data_sweep import (
    COPIES,
    FAMILIES,
    FRACTIONS,
    KIND_LEVEL,
    LEVELS,
    SAMPLES,
    SEEDS,
    STEPS,
    Plan,
    base_values,
    gan_families,
    profile,
    write_reports,
)
from aigc.errors import exit_on_error
from aigc.experiments import (
    ExperimentError,
    add_sweep_arguments,
    collect,
    dvc_exp_show_json,
    explain_failures,
    run_queue,
)
from aigc.models import MODELS
from aigc.params import read_params
from aigc.sweep_report import GRIDS, metrics_keys, params_keys, sweep_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=FAMILIES, choices=sorted(MODELS))
    parser.add_argument("--grids", nargs="+", default=["quantity", "quality", "seeds"],
                        choices=GRIDS)  # fmt: skip
    parser.add_argument("--fractions", nargs="+", type=float, default=FRACTIONS,
                        help="split.train_fraction values of the quantity grid")  # fmt: skip
    parser.add_argument("--levels", nargs="+", type=float, default=LEVELS,
                        help="shares of every corruption kind at once (quality grid)")  # fmt: skip
    parser.add_argument("--kind-level", type=float, default=KIND_LEVEL,
                        help="share of each corruption kind alone (0 = skip)")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS,
                        help="train.common.seed values of the seeds grid")  # fmt: skip
    parser.add_argument("--copies", nargs="+", type=int, default=COPIES,
                        help="augment.copies values of the augmentation grid")  # fmt: skip
    add_sweep_arguments(parser, STEPS, SAMPLES)
    parser.add_argument("--out", default="metrics/sweep.json")
    parser.add_argument("--markdown", default="reports/experiments.md")
    parser.add_argument("--html", default="reports/experiments.html")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        params = read_params(args.params)
    gans = gan_families(params, args.families)

    fixed = profile(args.families, args.steps, args.samples)
    plan = Plan(args.families, args.grids, args.fractions, args.levels, args.kind_level,
                args.seeds, args.copies)  # fmt: skip
    with exit_on_error(ExperimentError):
        if not args.collect_only:
            print(plan.queue(fixed, gans), end="")
            run_queue(args.jobs)
        shown = dvc_exp_show_json()
    keys = params_keys(fixed, gans)
    experiments = explain_failures(collect(shown, keys, metrics_keys(args.families)))
    rows = sweep_rows(experiments, args.families, fixed, base_values(params), gans)
    with exit_on_error():
        text = write_reports(rows, args.out, args.markdown, args.html)
    print(text)


if __name__ == "__main__":
    main()

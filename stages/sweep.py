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

each with `profile`'s overrides: a short budget and fewer samples, the same at every point, so
the default grids (17 experiments) run in about an hour with two one-thread workers on a 2-core
CPU. It runs the queue with `--jobs` workers, collects every experiment of the commit from
`dvc exp show --json` (aigc/experiments.py) into `--out` (metrics/sweep.json), and writes
reports/experiments.md (with each grid's curves beside it as experiments_GRID.png) and
reports/experiments.html (aigc/sweep_report.py). A point that fails (a bad value, a NaN loss)
is a row with its error; the rest of the sweep runs on. `--collect-only` skips the queue and
re-reads what ran.

    python -m stages.sweep                                    # both grids, dcgan and vae
    python -m stages.sweep --grids quantity --families vae --fractions 0.05 0.5 1 --jobs 2
    python -m stages.sweep --collect-only
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
from aigc.files import write_bytes, write_json, write_text
from aigc.models import MODELS
from aigc.params import read_params
from aigc.sweep_report import (
    GRIDS,
    SEED,
    SHARES,
    curves_png,
    experiments_html,
    experiments_markdown,
    grid_rows,
    metrics_keys,
    params_keys,
    sweep_rows,
)

FAMILIES = ["dcgan", "vae"]
FRACTIONS = [0.01, 0.05, 0.25, 1.0]  # log-spaced: 540 to 54,000 Fashion-MNIST images
LEVELS = [0.1, 0.2, 0.4]  # each share at this level, together
KIND_LEVEL = 0.2  # each kind alone at this share (0 = skip)
SEEDS = [1, 2]  # other training seeds of the reference point (seeds grid)
COPIES = [0, 1, 3]  # augmented copies per image (augmentation grid)
DIFF_AUGMENT = "[translation,cutout]"  # Zhao et al. 2020's choice for small data
# The sweep's budget, the same at every point (a quarter to a third of the default run's steps).
STEPS, SAMPLES = 1500, 2000


def profile(families: list[str], steps: int, samples: int) -> dict:
    """The `-S` overrides of every point: a point belongs to the sweep when it carries them."""
    return {**{f"train.{family}.steps": steps for family in families},
            "sample.num_samples": samples}  # fmt: skip


def quality_points(levels: list[float], kind_level: float) -> list[tuple[dict, list[str]]]:
    """(shares, cleaner settings) of every quality point; each queued as one DVC grid."""
    points = [({share: level for share in SHARES}, ["true", "false"]) for level in levels]
    if kind_level:
        for share in SHARES:
            cleaner = ["true"] if share == "label_flip" else ["true", "false"]
            points.append(({share: kind_level}, cleaner))
    return points


def gan_families(params: dict, families: list[str]) -> list[str]:
    """The families whose discriminator takes DiffAugment (a `diff_augment` key)."""
    return [family for family in families if "diff_augment" in params["train"].get(family, {})]


def queue(args, fixed: dict, gans: list[str]) -> None:
    targets = [f"evaluate@{family}" for family in args.families]
    if "quantity" in args.grids:
        grid = {"split.train_fraction": [_number(fraction) for fraction in args.fractions]}
        print(queue_grid(targets, grid, fixed | _shares({})), end="")
    if "quality" in args.grids:
        for shares, cleaner in quality_points(args.levels, args.kind_level):
            overrides = fixed | {"split.train_fraction": 1.0} | _shares(shares)
            print(queue_grid(targets, {"degrade.clean": cleaner}, overrides), end="")
    if "seeds" in args.grids:
        reference = fixed | {"split.train_fraction": 1.0} | _shares({})
        print(queue_grid(targets, {SEED: args.seeds}, reference), end="")
    if "augmentation" in args.grids:
        base = fixed | {"split.train_fraction": 1.0} | _shares({})
        for setting in ("[]", DIFF_AUGMENT) if gans else ("[]",):
            copies = args.copies if setting == "[]" else [c for c in args.copies if c <= 1]
            augment = {f"train.{gan}.diff_augment": setting for gan in gans}
            print(queue_grid(targets, {"augment.copies": copies}, base | augment), end="")


def _shares(chosen: dict) -> dict:
    """Every share set explicitly (0 unless chosen), whatever params.yaml holds."""
    return {f"degrade.{share}": chosen.get(share, 0.0) for share in SHARES}


def _number(value: float):
    return int(value) if float(value).is_integer() else value


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
    with exit_on_error(ExperimentError):
        if not args.collect_only:
            queue(args, fixed, gans)
            run_queue(args.jobs)
        shown = dvc_exp_show_json()
    keys = params_keys(fixed, gans)
    experiments = collect(shown, params=keys, metrics=metrics_keys(args.families))
    explain_failures(experiments)
    base = {"augment.copies": params["augment"]["copies"], SEED: params["train"]["common"]["seed"]}
    rows = sweep_rows(experiments, args.families, fixed, base, gans)
    markdown = Path(args.markdown)
    figures = {}
    with exit_on_error():
        write_json(args.out, rows)
        for grid in GRIDS:  # PNGs beside the markdown, which a code host renders
            png = curves_png(rows, grid) if grid_rows(rows, grid) else None
            if png:
                figures[grid] = f"{markdown.stem}_{grid}.png"
                write_bytes(markdown.parent / figures[grid], png)
        text = experiments_markdown(rows, figures)
        write_text(markdown, text)
        write_text(args.html, experiments_html(rows))
    print(text)


if __name__ == "__main__":
    main()

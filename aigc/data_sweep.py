"""The data sweep's plan: its grids, its profile, and queueing them through DVC (stages/sweep.py).

- `profile`: the `-S` overrides every point carries (its short budget); a point belongs to the
  sweep when it carries them.
- `Plan.queue`: one `dvc exp run --queue` per grid (or per quality point), DVC's comma lists
  expanding each into its experiments (aigc/experiments.py `queue_grid`). Every point sets
  each corruption share explicitly, so params.yaml's values cannot leak into a point.
- `base_values`: params.yaml's values of the params the rows are compared with
  (aigc/sweep_report.py `BASE_KEYS`).
- `write_reports`: metrics/sweep.json, the markdown with each grid's curves as a PNG beside
  it, and the self-contained HTML page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aigc.experiments import queue_grid
from aigc.files import write_bytes, write_json, write_text
from aigc.sweep_report import (
    GRIDS,
    SEED,
    SHARES,
    curves_png,
    experiments_html,
    experiments_markdown,
    grid_rows,
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


@dataclass(frozen=True)
class Plan:
    """What a sweep runs: the families, the grids and their values."""

    families: list[str]
    grids: list[str]
    fractions: list[float]
    levels: list[float]
    kind_level: float
    seeds: list[int]
    copies: list[int]

    def queue(self, fixed: dict, gans: list[str]) -> str:
        """Queue every point of the chosen grids, each with `fixed`; DVC's output."""
        targets = [f"evaluate@{family}" for family in self.families]
        reference = fixed | {"split.train_fraction": 1.0} | _shares({})
        output = []
        if "quantity" in self.grids:
            grid = {"split.train_fraction": [_number(fraction) for fraction in self.fractions]}
            output.append(queue_grid(targets, grid, fixed | _shares({})))
        if "quality" in self.grids:
            for shares, cleaner in quality_points(self.levels, self.kind_level):
                overrides = reference | _shares(shares)
                output.append(queue_grid(targets, {"degrade.clean": cleaner}, overrides))
        if "seeds" in self.grids:
            output.append(queue_grid(targets, {SEED: self.seeds}, reference))
        if "augmentation" in self.grids:
            for setting in ("[]", DIFF_AUGMENT) if gans else ("[]",):
                copies = self.copies if setting == "[]" else [c for c in self.copies if c <= 1]
                augment = {f"train.{gan}.diff_augment": setting for gan in gans}
                output.append(queue_grid(targets, {"augment.copies": copies}, reference | augment))
        return "".join(output)


def _shares(chosen: dict) -> dict:
    """Every share set explicitly (0 unless chosen), whatever params.yaml holds."""
    return {f"degrade.{share}": chosen.get(share, 0.0) for share in SHARES}


def _number(value: float):
    return int(value) if float(value).is_integer() else value


def base_values(params: dict) -> dict:
    """params.yaml's values of the params a sweep row is compared with."""
    return {"augment.copies": params["augment"]["copies"], SEED: params["train"]["common"]["seed"]}


def write_reports(rows: list[dict], out: str, markdown_path: str, html_path: str) -> str:
    """Write the rows, the markdown (each grid's curves beside it as a PNG, which a code host
    renders) and the HTML page; the markdown."""
    markdown = Path(markdown_path)
    write_json(out, rows)
    figures = {}
    for grid in GRIDS:
        png = curves_png(rows, grid) if grid_rows(rows, grid) else None
        if png:
            figures[grid] = f"{markdown.stem}_{grid}.png"
            write_bytes(markdown.parent / figures[grid], png)
    text = experiments_markdown(rows, figures)
    write_text(markdown, text)
    write_text(html_path, experiments_html(rows))
    return text

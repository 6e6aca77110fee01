"""The data sweep's table and curves: sample quality against data quantity, data quality and the
cleaner (`make sweep`, stages/sweep.py), as reports/experiments.md and reports/experiments.html.

- `sweep_rows`: the collected experiments (aigc/experiments.py rows) that carry the sweep's
  profile, one per distinct point (the newest), each with its grid ("quantity": every share
  0; "quality": train_fraction 1 with some share above 0; the uncorrupted full-data point
  belongs to both, as the quality curves' level 0), the training data's counts and every
  family's quality metrics. A failed or unfinished experiment keeps its row, with its error.
- `experiments_markdown` and `experiments_html`: the tables (with the experiment names that
  `dvc exp apply` takes) and, in the HTML, FID, recall and coverage against each knob, one line
  per family (per family and cleaner setting for the quality grid), drawn offline by
  matplotlib and embedded, so the page is one self-contained file. Every text is escaped.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from aigc.report import data_uri, figure_png, format_value

SHARES = ("label_flip", "broken", "duplicates")
QUALITY = [("fid", "FID ↓", "{:.1f}"), ("recall", "Recall ↑", "{:.3f}"),
           ("coverage", "Coverage ↑", "{:.3f}")]  # fmt: skip
COPIES = ("copy_rate", "copies ↓", "{:.3f}")  # in the tables, not the curves
FAMILY_METRICS = ["fid", "fid_se", "precision", "recall", "coverage", "classes_covered",
                  "class_kl", "copy_rate"]  # fmt: skip
DATA_METRICS = ["images", "rejected", "caught_share", "rejected_clean_images", "undecodable_kept"]
INTRO = (
    "Each point retrains every family on the training split as the point's params make it "
    "(`split.train_fraction`, `degrade.*`), on the sweep's short budget (the same at every "
    "point), and scores it with the default ruler: the evaluator and the reference sets do "
    "not change across the sweep. `dvc exp apply EXPERIMENT` restores a point; "
    "`dvc exp run -S ...` with its params re-runs it."
)


SEED = "train.common.seed"
BASE_KEYS = ("augment.copies", SEED)  # the params a point compares with params.yaml's values


def params_keys(profile: dict, gans: list[str]) -> list[str]:
    """The params a sweep row is told apart by: its knobs and the profile's."""
    return ["split.train_fraction", *(f"degrade.{share}" for share in SHARES), "degrade.clean",
            "augment.copies", *(f"train.{gan}.diff_augment" for gan in gans), SEED,
            *profile]  # fmt: skip


def metrics_keys(families: list[str]) -> list[str]:
    keys = [f"metrics/{family}.json:{key}" for family in families for key in FAMILY_METRICS]
    keys += [f"logs/{family}/metrics.json:train_seconds" for family in families]
    return keys + [f"metrics/training_data.json:{key}" for key in DATA_METRICS]


def sweep_rows(
    experiments: list, families: list[str], profile: dict, base: dict, gans: list[str]
) -> list[dict]:
    """One row per distinct sweep point, from the newest experiment that carries `profile`.
    `base` holds params.yaml's values of BASE_KEYS: a point with other augment.copies, or
    DiffAugment in one of the `gans`, is an augmentation point; one with another training
    seed measures the seed-to-seed spread of the reference point."""
    rows, seen = [], set()
    for experiment in experiments:
        values = experiment.params
        if any(values.get(key) != value for key, value in profile.items()):
            continue  # not a point of this sweep
        fraction = values.get("split.train_fraction")
        shares = {share: values.get(f"degrade.{share}") or 0 for share in SHARES}
        cleaner = bool(values.get("degrade.clean", True))
        corrupted = any(shares.values())
        copies = values.get("augment.copies")
        diff_augment = any(values.get(f"train.{gan}.diff_augment") for gan in gans)
        seed = values.get(SEED)
        point = (fraction, *shares.values(), cleaner if corrupted else None, copies, diff_augment,
                 seed)  # fmt: skip
        if point in seen:
            continue
        seen.add(point)
        augmented = copies != base["augment.copies"] or diff_augment
        reseeded = seed != base[SEED]
        found = experiment.metrics
        rows.append({
            "experiment": experiment.name,
            "grids": _grids(fraction, corrupted, augmented, reseeded),
            "train_fraction": fraction,
            **shares,
            "cleaner": cleaner if corrupted else None,
            "copies": copies,
            "seed": seed,
            "diff_augment": diff_augment,
            **{key: found.get(f"metrics/training_data.json:{key}") for key in DATA_METRICS},
            "families": {
                family: {key: found.get(f"metrics/{family}.json:{key}") for key in FAMILY_METRICS}
                | {"train_seconds": found.get(f"logs/{family}/metrics.json:train_seconds")}
                for family in families
            },
            "error": experiment.error,
        })  # fmt: skip
    return sorted(rows, key=_order)


def _grids(fraction, corrupted: bool, augmented: bool, reseeded: bool) -> list[str]:
    """The grids a point belongs to: the uncorrupted, default-augmented full-data point at the
    default seed is in every one (each curve's reference); a point that moves two knobs is in
    none; another seed of the reference point is in "seeds" only."""
    reference = fraction == 1 and not corrupted and not augmented
    if reseeded:
        return ["seeds"] if reference else []
    grids = []
    if not corrupted and not augmented:
        grids.append("quantity")
    if fraction == 1 and not augmented:
        grids.append("quality")
    if fraction == 1 and not corrupted:
        grids.append("augmentation")
    if reference:
        grids.append("seeds")
    return grids


def _order(row: dict) -> tuple:
    """Fraction, then: none, every kind at once by level, each kind alone, other mixtures."""
    shares = [row[share] for share in SHARES]
    present = [i for i, share in enumerate(shares) if share]
    if not present or len(set(shares)) == 1:
        kind = 0
    elif len(present) == 1:
        kind = 1 + present[0]
    else:
        kind = 4
    augmentation = (row.get("copies") or 0, bool(row.get("diff_augment")))
    cleaner_off = row["cleaner"] is False
    return (row["train_fraction"] or 0, kind, max(shares), cleaner_off, *augmentation,
            row.get("seed") or 0)  # fmt: skip


def read_rows(path: str | Path) -> list[dict]:
    """The rows `make sweep` wrote; [] when there is no (readable) file."""
    try:
        rows = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def families_of(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(family for row in rows for family in row.get("families", {})))


def grid_rows(rows: list[dict], grid: str) -> list[dict]:
    """The rows of `grid`; none when it holds only the shared reference point (not swept)."""
    chosen = [row for row in rows if grid in row.get("grids", [])]
    return chosen if len(chosen) > 1 else []


def _point(row: dict, grid: str) -> str:
    if grid == "quantity":
        return format_value(row["train_fraction"], "{:g}")
    if grid == "augmentation":
        return f"copies {row.get('copies')}" + (", DiffAugment" if row.get("diff_augment") else "")
    if grid == "seeds":
        return f"seed {row.get('seed')}"
    parts = [f"{share} {row[share]:g}" for share in SHARES if row[share]]
    cleaner = {True: "cleaner on", False: "cleaner off", None: ""}[row["cleaner"]]
    return ", ".join(parts + [cleaner]) if parts else "none"


def table(rows: list[dict], grid: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one grid's table."""
    families = families_of(rows)
    header = [{"quantity": "train_fraction", "quality": "corruption"}.get(grid, grid), "images"]
    if grid == "quality":
        header += ["rejected", "injected caught"]
    header += [f"{family} {name}" for family in families for _, name, _ in (*QUALITY, COPIES)]
    header += ["experiment"]
    body = []
    for row in rows:
        cells = [_point(row, grid), format_value(row.get("images"), "{:d}")]
        if grid == "quality":
            cells += [format_value(row.get("rejected"), "{:d}"),
                      format_value(row.get("caught_share"), "{:.0%}")]  # fmt: skip
        for family in families:
            values = row["families"].get(family, {})
            cells += [format_value(values.get(key), template)
                      for key, _, template in (*QUALITY, COPIES)]  # fmt: skip
        cells.append(row["experiment"] + (f" ({row['error']})" if row.get("error") else ""))
        body.append(cells)
    return header, body


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 2) + "---|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
              for cells in body]  # fmt: skip
    return "\n".join(lines)


GRIDS = ("quantity", "quality", "augmentation", "seeds")
KNOBS = {"quantity": "train_fraction", "quality": "corruption level", "augmentation": "copies",
         "seeds": "training seed"}  # fmt: skip
TITLES = {
    "quantity": "Data quantity: a stratified share of the training split",
    "quality": "Data quality: label flips, broken files and duplicates, cleaner on and off",
    "augmentation": "Augmentation: augmented copies per image, DiffAugment in the discriminator",
    "seeds": "Seed to seed: the reference point trained with other seeds (the noise floor)",
}


def experiments_markdown(rows: list[dict], figures: dict[str, str] | None = None) -> str:
    """reports/experiments.md; `figures` maps a grid to the path of its curves' PNG, relative
    to the markdown file, shown above its table."""
    parts = ["# Data experiments", "", INTRO]
    for grid in GRIDS:
        chosen = grid_rows(rows, grid)
        if chosen:
            parts += ["", f"## {TITLES[grid]}", ""]
            if figures and grid in figures:
                parts += [f"![FID, recall and coverage against {KNOBS[grid]}]({figures[grid]})", ""]
            parts.append(markdown(*table(chosen, grid)))
    failed = [row for row in rows if row.get("error")]
    if failed:
        parts += ["", "## Failed or unfinished", ""]
        parts += [f"- {row['experiment']}: {row['error']}" for row in failed]
    return "\n".join(parts) + "\n"


def curves_png(rows: list[dict], grid: str) -> bytes | None:
    """FID, recall and coverage against the grid's knob, one line per family (and cleaner);
    None for the seeds grid (a table: its points have no order)."""
    points = [row for row in grid_rows(rows, grid) if not row.get("error")]
    if not points or grid == "seeds":
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(QUALITY), figsize=(4.2 * len(QUALITY), 3.2))
    for family in families_of(points):
        for variant, style in ((True, "-"), (False, "--")):
            line = _line(points, grid, variant)
            if grid == "quantity" and not variant:
                continue
            setting = {"quantity": "", "quality": ", cleaner " + ("on" if variant else "off"),
                       "augmentation": "" if variant else ", DiffAugment"}[grid]  # fmt: skip
            for axis, (key, name, _) in zip(axes, QUALITY, strict=True):
                found = [(x, row["families"].get(family, {})) for x, row in line]
                found = [(x, values) for x, values in found if values.get(key) is not None]
                if len(found) > 1 or (found and grid == "quality"):
                    xs = [x for x, _ in found]
                    ys = [values[key] for _, values in found]
                    errors = [values.get(f"{key}_se") or 0 for _, values in found]  # FID's SE
                    axis.errorbar(xs, ys, yerr=errors, fmt=style, marker="o", capsize=2,
                                  label=family + setting)  # fmt: skip
                axis.set_title(name)
                axis.set_xlabel(KNOBS[grid])
                if grid == "quantity":  # fractions are log-spaced: show them as they are
                    ticks = sorted({x for x, _ in _line(points, grid, True)})
                    axis.set_xscale("log")
                    axis.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
                    axis.minorticks_off()
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    figure.tight_layout()
    return figure_png(figure)


def _line(points: list[dict], grid: str, variant: bool) -> list[tuple[float, dict]]:
    """(x, row) of one curve. quantity: the fraction. quality (`variant` = cleaner on): the
    level of points whose shares are all equal, level 0 the uncorrupted point. augmentation
    (`variant` = without DiffAugment): the copies."""
    if grid == "quantity":
        line = [(row["train_fraction"], row) for row in points]
    elif grid == "augmentation":
        line = [(row["copies"], row) for row in points if bool(row["diff_augment"]) != variant]
    else:
        line = []
        for row in points:
            shares = {row[share] for share in SHARES}
            if len(shares) == 1 and row["cleaner"] in (variant, None):
                line.append((shares.pop(), row))
    return sorted(line, key=lambda point: point[0])


CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child, td:last-child { text-align: left; }
img { max-width: 100%; }
"""


def _grids_html(rows: list[dict], level: int) -> list[str]:
    """Each grid's curves and table, then the failed points, under <hLEVEL> headings."""
    parts = []
    for grid in GRIDS:
        chosen = grid_rows(rows, grid)
        if not chosen:
            continue
        parts.append(f"<h{level}>{html.escape(TITLES[grid])}</h{level}>")
        png = curves_png(rows, grid)
        if png:
            alt = html.escape(f"FID, recall and coverage against the {grid} knob")
            parts.append(f'<img id="{grid}-curves" src="{data_uri(png)}" alt="{alt}">')
        header, body = table(chosen, grid)
        heads = "".join(f"<th>{html.escape(text)}</th>" for text in header)
        parts.append(f'<table id="{grid}"><thead><tr>{heads}</tr></thead><tbody>')
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
                  for cells in body]  # fmt: skip
        parts.append("</tbody></table>")
    failed = [row for row in rows if row.get("error")]
    if failed:
        parts.append(f"<h{level}>Failed or unfinished</h{level}><ul>")
        parts += [f"<li>{html.escape(row['experiment'])}: {html.escape(row['error'])}</li>"
                  for row in failed]  # fmt: skip
        parts.append("</ul>")
    return parts


def experiments_html(rows: list[dict]) -> str:
    """reports/experiments.html: the whole sweep on one self-contained page."""
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>aigc data experiments</title>", f"<style>{CSS}</style></head><body>",
             "<h1>Data experiments</h1>", f"<p>{html.escape(INTRO)}</p>"]  # fmt: skip
    parts += _grids_html(rows, 2)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def training_data_line(metrics: dict | None) -> str:
    """One sentence on the training set of this run (metrics/training_data.json)."""
    if not metrics:
        return "metrics/training_data.json is missing (run the degrade stage)."
    injected = {kind: n for kind, n in (metrics.get("injected") or {}).items() if n}
    text = (f"The models trained on {metrics.get('images')} images: split.train_fraction "
            f"{metrics.get('train_fraction')} of {metrics.get('split_images')}")  # fmt: skip
    if not injected:
        return text + ", uncorrupted."
    shown = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in injected.items())
    cleaner = "on" if metrics.get("cleaner") else "off"
    caught = format_value(metrics.get("caught_share"), "{:.0%}")
    return text + f", corrupted on purpose ({shown}); cleaner {cleaner}, {caught} of it caught."


def section_html(rows: list[dict], training_data: dict | None) -> str:
    """The main report's data section: this run's training set, then the sweep when it ran."""
    parts = ["<h2>Training data and data experiments</h2>",
             f"<p>{html.escape(training_data_line(training_data))}</p>"]  # fmt: skip
    if rows:
        parts += [f"<p>{html.escape(INTRO)} The sweep: reports/experiments.html.</p>"]
        parts += _grids_html(rows, 3)
    return "\n".join(parts)


def section_markdown(rows: list[dict], training_data: dict | None) -> str:
    parts = ["### Training data and data experiments", "", training_data_line(training_data)]
    for grid in GRIDS:
        chosen = grid_rows(rows, grid)
        if chosen:
            parts += ["", f"#### {TITLES[grid]}", "", markdown(*table(chosen, grid))]
    return "\n".join(parts)

"""The report: one self-contained HTML page and a markdown table of every model's numbers.

The page works offline and as a single file: sample grids are inlined as base64 PNG `data:`
URIs, charts (loss curves from the dvclive TSVs, class histograms) are drawn here with
matplotlib's Agg backend and inlined the same way, and the only CSS is a `<style>` block.
dvclive's own HTML and `dvc plots show` fetch vega from the web, so they render blank offline.

Rows are the real held-out images first (the floor), then the models in params.yaml order; a
model whose files are missing keeps its row with a visible note. FID and KID show "± SE"; a
second table repeats the metrics that depend on the sample count at the real row's N (the
`*_at_real_n` keys of `aigc.metrics`), where the rows compare like for like.

The main table opens with a verdict per model: a traffic light (good / fair / poor, the word
beside the colour) from the thresholds of `VerdictRule`, relative to the real floor, and the
model's recall and coverage as shares of the real row's. Each model's sample grid stands beside
a grid of real images of the classes the evaluator sees in those samples (written by the
evaluate stage, `aigc.real_grids.real_grid_images`).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aigc.params import ParamsError, read_params

REAL = "real"
IMAGES = [  # (file in reports/samples/MODEL, caption), in page order
    ("grid.png", "samples"),
    ("interpolation.png", "latent interpolation"),
    ("classes.png", "one row per class"),
    ("reconstructions.png", "reconstructions (originals above, reconstructions below)"),
]
# Beside grid.png: REAL_GRIDS/MODEL.png from the evaluate stage (aigc.real_grids.real_grid_images).
REAL_GRID_CAPTION = "real images of the classes the evaluator sees in them"


@dataclass(frozen=True)
class Column:
    """A table column: the metrics key, its header (↓ lower is better, ↑ higher is better), the
    format, and the key of its standard error, shown as "value ± error" when present."""

    key: str
    header: str
    template: str
    error_key: str | None = None


COLUMNS = [
    Column("fid", "FID ↓", "{:.2f}", "fid_se"),
    Column("kid_mean", "KID ↓", "{:.3g}", "kid_se"),
    Column("inception_score_mean", "IS ↑", "{:.2f}"),
    Column("precision", "Precision ↑", "{:.3f}"),
    Column("recall", "Recall ↑", "{:.3f}"),
    Column("density", "Density", "{:.3f}"),
    Column("coverage", "Coverage ↑", "{:.3f}"),
    Column("classes_covered", "Classes", "{:d}"),
    Column("class_kl", "Class KL ↓", "{:.3f}"),
    Column("copy_rate", "Copy rate ↓", "{:.3f}"),
    Column("reconstruction_ssim", "SSIM ↑", "{:.3f}"),
    Column("reconstruction_psnr", "PSNR ↑", "{:.1f}"),
    Column("images_per_second", "Images/s ↑", "{:.0f}"),
    Column("train_seconds", "Train s", "{:.0f}"),
    Column("samples", "N", "{:d}"),
]
# The metrics that depend on the sample count, every row at the real row's N (aigc.metrics).
LIKE_FOR_LIKE = [
    Column("fid_at_real_n", "FID ↓", "{:.2f}", "fid_se_at_real_n"),
    Column("precision_at_real_n", "Precision ↑", "{:.3f}"),
    Column("recall_at_real_n", "Recall ↑", "{:.3f}"),
    Column("density_at_real_n", "Density", "{:.3f}"),
    Column("coverage_at_real_n", "Coverage ↑", "{:.3f}"),
    Column("real_n", "N", "{:d}"),
]


@dataclass(frozen=True)
class VerdictRule:
    """The thresholds of the verdict column, in one place; `verdict` applies them.

    Recall and coverage are read at the real row's N (the like-for-like `*_at_real_n` keys,
    the headline keys for a metrics file without them), so they compare with the real row's.

    - green ("good"): every class covered, class KL <= `good_class_kl`, recall >=
      `good_recall`, and copy rate <= the real floor's copy rate + `copy_tolerance`;
    - red ("poor"): recall < `poor_recall`, or fewer than `poor_classes` of the classes
      covered (8 of 10), or class KL > `poor_class_kl`;
    - amber ("fair"): every other row.

    The copy tolerance: the real floor's copy rate is `evaluate.copy_quantile` (1 %) by
    construction, measured on the held-out split (6 000 images: standard error 0.13 points);
    a model's, on 10 000 samples, has a standard error of 0.10 points near that rate. Their
    difference has a standard error of 0.16 points, so 0.5 points is about three of them: a
    model within it cannot be told apart from unseen real images, one above it makes
    measurably more near-copies of its training images than they do. The class conditions
    apply only where the evaluator has classes (an unlabelled source has none).
    """

    good_recall: float = 0.30
    good_class_kl: float = 0.05
    copy_tolerance: float = 0.005
    poor_recall: float = 0.10
    poor_classes: float = 0.8  # share of the classes covered below which a row is red
    poor_class_kl: float = 0.20


RULE = VerdictRule()
LIGHTS = {"green": "good", "amber": "fair", "red": "poor"}  # colour -> its text label
MARKDOWN_LIGHTS = {"green": "🟢", "amber": "🟡", "red": "🔴"}


@dataclass(frozen=True)
class Verdict:
    """A row's traffic light, its label, why it is not green (or why red), and its recall and
    coverage as shares of the real floor's ("recall 0.54 = 61 % of real")."""

    colour: str  # "green" | "amber" | "red"
    reasons: tuple[str, ...]
    shares: tuple[str, ...]  # ("recall 0.54 = 61 % of real", "coverage 0.32 = 35 % of real")

    @property
    def label(self) -> str:
        return LIGHTS[self.colour]


@dataclass
class Row:
    """One line of the table: a name, its metrics (None when missing) and notes."""

    name: str
    metrics: dict | None
    notes: list[str] = field(default_factory=list)


def model_names(params_path: str | Path) -> list[str]:
    """params.yaml `models`, checked to be a list of names (ParamsError names the key)."""
    models = read_params(params_path).get("models")
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ParamsError(f"models = {models!r} is not allowed; allowed: a list of model names")
    return models


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`, or None when the file is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def load_rows(metrics_dir: Path, models: Iterable[str], logs_dir: Path) -> list[Row]:
    """The real row, then one row per model; missing or broken metrics files become notes.

    A model's timings come from its logs, never from the metrics: `train_seconds` from the
    dvclive summary (LOGS/MODEL/metrics.json), `images_per_second` (sampling) from the sample
    stage's LOGS/MODEL/sampling.json. Both are uncached files, so a re-run that changes only a
    timing re-runs nothing but this report.
    """
    rows = []
    for name in [REAL, *models]:
        path = metrics_dir / f"{name}.json"
        metrics = read_json(path)
        notes = [] if metrics is not None else [f"no metrics: {path} is missing or unreadable"]
        if metrics is not None and name != REAL:
            metrics = {**metrics, **read_timings(logs_dir / name)}
        rows.append(Row(name, metrics, notes))
    return rows


def read_timings(log_dir: Path) -> dict:
    """{"train_seconds", "images_per_second"} of one model from its logs (None where missing)."""
    training = read_json(log_dir / "metrics.json") or {}
    sampling = read_json(log_dir / "sampling.json") or {}
    return {
        "train_seconds": training.get("train_seconds"),
        "images_per_second": sampling.get("images_per_second"),
    }


def format_value(value, template: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    try:
        return template.format(value)
    except (ValueError, TypeError):
        return str(value)


def cell(metrics: dict, column: Column) -> str:
    """One formatted value, with "± error" when the column has a standard error at hand."""
    text = format_value(metrics.get(column.key), column.template)
    error = metrics.get(column.error_key) if column.error_key else None
    if text != "–" and format_value(error, column.template) != "–":
        text += " ± " + format_value(error, column.template)
    return text


def cells(row: Row, columns: list[Column] = COLUMNS) -> list[str]:
    metrics = row.metrics or {}
    return [cell(metrics, column) for column in columns]


# ---------------------------------------------------------------- the verdict column


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def like_for_like(metrics: dict, key: str):
    """`key` at the real row's N (`KEY_at_real_n`), the headline value where that is missing."""
    value = metrics.get(f"{key}_at_real_n")
    return metrics.get(key) if value is None else value


def share_of_real(name: str, value, real_value) -> str:
    """`recall 0.54 = 61 % of real` (the bare value where the real value is 0 or missing)."""
    if not _number(value):
        return f"{name} –"
    text = f"{name} {value:.2f}"
    if _number(real_value) and real_value > 0:
        text += f" = {100 * value / real_value:.0f} % of real"
    return text


def verdict(metrics: dict | None, real: dict | None, rule: VerdictRule = RULE) -> Verdict | None:
    """One model's traffic light against the real floor (`real`: the real row's metrics) by
    `rule` (see VerdictRule); None when the model has no recall to judge."""
    metrics, real = metrics or {}, real or {}
    recall = like_for_like(metrics, "recall")
    if not _number(recall):
        return None
    poor, short = [], []  # reasons for red; reasons it is not green
    if recall < rule.poor_recall:
        poor.append(f"recall {recall:.3f} < {rule.poor_recall:.2f}")
    if recall < rule.good_recall:
        short.append(f"recall {recall:.3f} < {rule.good_recall:.2f}")
    covered, total = metrics.get("classes_covered"), metrics.get("num_classes")
    total = total if _number(total) else len(class_shares(metrics))
    if _number(covered) and total:
        if covered < rule.poor_classes * total:
            poor.append(f"{covered} of {total} classes covered (< {rule.poor_classes * total:g})")
        if covered < total:
            short.append(f"{covered} of {total} classes covered")
    kl = metrics.get("class_kl")
    if _number(kl):
        if kl > rule.poor_class_kl:
            poor.append(f"class KL {kl:.3f} > {rule.poor_class_kl:.2f}")
        if kl > rule.good_class_kl:
            short.append(f"class KL {kl:.3f} > {rule.good_class_kl:.2f}")
    copies, real_copies = metrics.get("copy_rate"), real.get("copy_rate")
    if not (_number(copies) and _number(real_copies)):
        short.append("no copy rate of the model or of the real row to compare")
    elif copies > real_copies + rule.copy_tolerance:
        limit = f"real {real_copies:.3f} + {rule.copy_tolerance:.3f}"
        short.append(f"copy rate {copies:.3f} > {limit}")
    shares = tuple(
        share_of_real(key, like_for_like(metrics, key), like_for_like(real, key))
        for key in ("recall", "coverage")
    )
    colour = "red" if poor else "amber" if short else "green"
    return Verdict(colour, tuple(poor or short), shares)


def rule_text(rule: VerdictRule = RULE) -> str:
    """The verdict rule in words, from the thresholds themselves."""
    return (
        f"Verdict: good (green) when every class is covered, class KL ≤ {rule.good_class_kl:.2f}, "
        f"recall ≥ {rule.good_recall:.2f} and the copy rate is at most the real row's + "
        f"{rule.copy_tolerance:.3f} (about three standard errors of the difference at the "
        f"default sample counts); poor (red) when recall < {rule.poor_recall:.2f}, fewer than "
        f"{rule.poor_classes:.0%} of the classes are covered ({10 * rule.poor_classes:g} of 10) "
        f"or class KL > {rule.poor_class_kl:.2f}; fair (amber) otherwise. Recall and coverage "
        "are read at the real row's N (the like-for-like table) and shown as a share of the "
        "real row's; the class conditions apply where the evaluator has classes."
    )


def verdicts(rows: list[Row]) -> dict[str, Verdict | None]:
    """{model name: its verdict} against the real row (the real row itself gets none)."""
    real = next((row.metrics for row in rows if row.name == REAL), None)
    return {row.name: verdict(row.metrics, real) for row in rows if row.name != REAL}


def verdict_markdown(found: Verdict | None, name: str) -> str:
    if name == REAL:
        return "floor"
    if found is None:
        return "–"
    return " · ".join([f"{MARKDOWN_LIGHTS[found.colour]} {found.label}", *found.shares])


def not_green(rows: list[Row]) -> list[tuple[str, Verdict]]:
    """(model name, verdict) of every model that is judged and not green."""
    return [(name, found) for name, found in verdicts(rows).items() if found and found.reasons]


def markdown_table(
    rows: list[Row], columns: list[Column] = COLUMNS, with_verdict: bool = False
) -> str:
    """A results table; `with_verdict` adds the verdict column after the model's name."""
    judged = verdicts(rows) if with_verdict else {}
    verdict_header = " Verdict |" if with_verdict else ""
    lines = [
        f"| Model |{verdict_header} " + " | ".join(column.header for column in columns) + " |",
        "|---|" + ("---|" if with_verdict else "") + "---:|" * len(columns),
    ]
    for row in rows:
        name = f"**{row.name}**" if row.name == REAL else row.name
        light = f" {verdict_markdown(judged.get(row.name), row.name)} |" if with_verdict else ""
        lines.append(f"| {name} |{light} " + " | ".join(cells(row, columns)) + " |")
    return "\n".join(lines)


def like_for_like_text(rows: list[Row]) -> str:
    """What the like-for-like table shows, with the real row's N when it is known."""
    real = next((row.metrics for row in rows if row.name == REAL and row.metrics), None) or {}
    count = real.get("real_n", real.get("samples"))
    size = f"N = {count}" if isinstance(count, int) else "N"
    return (
        f"The real row can only hold the held-out split ({size} images), while each model "
        "draws more; these columns score every row on that many of its samples (drawn with a "
        "fixed seed) against the same reference set, so they compare with the real row's. "
        "KID, copy rate and class shares do not depend on N."
    )


def markdown_summary(rows: list[Row], evaluator: dict | None, sections: Iterable[str] = ()) -> str:
    """reports/summary.md: the table, the evaluator's accuracy, notes and `sections` (more
    markdown, such as the privacy section), for a PR comment."""
    parts = ["## aigc: sample quality", ""]
    parts.append(
        "Metrics in the evaluator's feature space; **real** is held-out real images (the floor)."
    )
    parts.append("FID and KID carry their standard errors (± SE, over fresh sets of samples).")
    parts += ["", markdown_table(rows, with_verdict=True), "", rule_text(), ""]
    parts += [
        f"- {name}: {MARKDOWN_LIGHTS[found.colour]} {found.label}: {'; '.join(found.reasons)}"
        for name, found in not_green(rows)
    ]
    parts.append("")
    parts += ["### Like for like: every row at the real row's N", "", like_for_like_text(rows)]
    parts += ["", markdown_table(rows, LIKE_FOR_LIKE), "", evaluator_line(evaluator)]
    notes = [f"- {row.name}: {note}" for row in rows for note in row.notes]
    if notes:
        parts += ["", "Notes:", *notes]
    parts += [part for section in sections for part in ("", section)]
    return "\n".join(parts) + "\n"


def evaluator_line(evaluator: dict | None) -> str:
    if not evaluator:
        return "Evaluator: metrics/evaluator.json is missing."
    if evaluator.get("test_accuracy") is not None:
        return (
            f"Evaluator: {evaluator.get('kind', 'classifier')}, test accuracy "
            f"{evaluator['test_accuracy']:.4f}, "
            f"val accuracy {evaluator.get('val_accuracy', 0):.4f}, "
            f"{evaluator.get('epochs', '?')} epochs, {evaluator.get('seconds', 0):.0f} s."
        )
    return (
        f"Evaluator: {evaluator.get('kind', '?')} (unlabelled source: no accuracy, class metrics "
        f"are null), test loss {evaluator.get('test_loss', float('nan')):.4f}."
    )


# ---------------------------------------------------------------- charts


def read_curves(log_dir: Path) -> dict[str, tuple[list[float], list[float]]]:
    """dvclive TSVs under LOG/plots/metrics: {"train/d_loss": (steps, values)}; the epoch
    counter the training loop also logs is not a curve worth drawing."""
    curves = {}
    root = log_dir / "plots" / "metrics"
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        if path.stem == "epoch":
            continue
        steps, values = [], []
        with path.open(newline="") as handle:
            reader = csv.reader(handle, delimiter="\t")
            header = next(reader, None)
            if not header or len(header) < 2:
                continue
            for record in reader:
                try:
                    steps.append(float(record[0]))
                    values.append(float(record[-1]))
                except (ValueError, IndexError):
                    continue
        if steps:
            curves[path.relative_to(root).with_suffix("").as_posix()] = (steps, values)
    return curves


def figure_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue()


def curves_png(curves: dict[str, tuple[list[float], list[float]]]) -> bytes:
    """Small multiples: one panel per logged series (losses live on different scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(curves))
    rows = math.ceil(len(curves) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False)
    for axis, (name, (steps, values)) in zip(axes.flat, curves.items(), strict=False):
        axis.plot(steps, values, linewidth=1.2)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(curves) :]:
        axis.axis("off")
    figure.tight_layout()
    return figure_png(figure)


def class_shares(metrics: dict) -> dict[str, float]:
    """{class name: share} from the flat `class_share_NN_name` keys, in class order."""
    found = sorted(key for key in metrics if key.startswith("class_share_"))
    return {key[len("class_share_") + 3 :]: float(metrics[key]) for key in found}


def histogram_png(rows: list[Row]) -> bytes | None:
    """Grouped bars: each row's share of samples per evaluator class (None without classes)."""
    shares = {row.name: class_shares(row.metrics or {}) for row in rows}
    shares = {name: value for name, value in shares.items() if value}
    if not shares:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(next(iter(shares.values())))
    width = 0.8 / len(shares)
    figure, axis = plt.subplots(figsize=(max(8, 0.9 * len(classes)), 3.6))
    for offset, (name, value) in enumerate(shares.items()):
        positions = [
            index + (offset - (len(shares) - 1) / 2) * width for index in range(len(classes))
        ]
        axis.bar(positions, [value.get(c, 0.0) for c in classes], width, label=name)
    axis.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("share of samples (evaluator's class)")
    axis.legend(fontsize=8, ncols=min(6, len(shares)))
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure_png(figure)


# ---------------------------------------------------------------- the page


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image(png: bytes, caption: str) -> str:
    alt = html.escape(caption)
    return f'<figure><img src="{data_uri(png)}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _key_values(values: dict | None, missing: str) -> str:
    """A two-column table of a (possibly nested) JSON object."""
    if not values:
        return _note(missing)
    lines = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            text = format_value(value, "{:.6g}") if isinstance(value, float) else str(value)
            lines.append(f"<tr><th>{html.escape(prefix)}</th><td>{html.escape(text)}</td></tr>")

    walk("", values)
    return '<table class="kv">' + "".join(lines) + "</table>"


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1, h2, h3 { font-weight: 600; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: .25em .6em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child, .kv th { text-align: left; }
tr.real { background: #f3f7ff; font-weight: 600; }
.note { color: #a33; }
figure { display: inline-block; margin: .4em 1em .4em 0; vertical-align: top; }
figure img { image-rendering: pixelated; max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #666; } .kv { display: inline-table; margin-right: 2em; }
.pair { display: flex; flex-wrap: wrap; align-items: flex-start; }
#results td:nth-child(2), #results th:nth-child(2) { text-align: left; min-width: 10em; }
#results small { font-size: 11px; }
.light { font-size: 1.15em; } .light.green { color: #1a7f37; } .light.amber { color: #c98a00; }
.light.red { color: #cf222e; } .rule { font-size: 12px; color: #555; max-width: 60em; }
.verdicts { list-style: none; padding-left: 0; font-size: 13px; }
"""


def verdict_html(found: Verdict | None, name: str) -> str:
    """A coloured light (hidden from screen readers, which read the label), the label, the
    shares of the real floor; the reasons as the cell's tooltip."""
    if name == REAL:
        return "floor"
    if found is None:
        return "–"
    reasons = html.escape("; ".join(found.reasons), quote=True)
    label = f'<span title="{reasons}">{found.label}</span>' if reasons else found.label
    shares = "<br>".join(html.escape(share) for share in found.shares)
    return f"{_light(found.colour)} {label}<br><small>{shares}</small>"


def _light(colour: str) -> str:
    return f'<span class="light {colour}" aria-hidden="true">●</span>'


def html_table(
    rows: list[Row], columns: list[Column], table_id: str, with_verdict: bool = False
) -> str:
    """One results table, every text escaped; the real row is highlighted; `with_verdict` adds
    the verdict column after the model's name."""
    header = "".join(f"<th>{html.escape(column.header)}</th>" for column in columns)
    header = ("<th>Verdict</th>" if with_verdict else "") + header
    judged = verdicts(rows) if with_verdict else {}
    lines = [f'<table id="{table_id}"><thead><tr><th>Model</th>{header}</tr></thead><tbody>']
    for row in rows:
        values = "".join(f"<td>{html.escape(value)}</td>" for value in cells(row, columns))
        if with_verdict:
            values = f"<td>{verdict_html(judged.get(row.name), row.name)}</td>" + values
        css = ' class="real"' if row.name == REAL else ""
        lines.append(f"<tr{css}><td>{html.escape(row.name)}</td>{values}</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def build_html(
    rows: list[Row],
    data_summary: dict | None,
    evaluator: dict | None,
    samples_dir: Path,
    logs_dir: Path,
    real_grids_dir: Path | None = None,
    sections: Iterable[str] = (),
) -> str:
    """The whole report page as one string (nothing outside it is fetched). With
    `real_grids_dir`, each model's sample grid stands beside REAL_GRIDS/MODEL.png, the real
    images of the classes the evaluator sees in those samples (the evaluate stage's).
    `sections` (HTML, such as the privacy section) follow the tables."""
    body = ["<h1>aigc report</h1>"]
    body.append(
        "<p>Every metric is computed in the evaluator's feature space. The <b>real</b> row scores "
        "held-out real images the same way: the floor a model is measured against. FID and KID "
        "carry their standard errors (± SE, over fresh sets of samples).</p>"
    )
    body.append(html_table(rows, COLUMNS, "results", with_verdict=True))
    body.append(f'<p class="rule">{html.escape(rule_text())}</p>')
    notes = [
        f"<li>{_light(found.colour)} {html.escape(name)}: {found.label}: "
        f"{html.escape('; '.join(found.reasons))}</li>"
        for name, found in not_green(rows)
    ]
    if notes:
        body.append('<ul class="verdicts">' + "".join(notes) + "</ul>")
    body.append("<h3>Like for like: every row at the real row's N</h3>")
    body.append(f"<p>{html.escape(like_for_like_text(rows))}</p>")
    body.append(html_table(rows, LIKE_FOR_LIKE, "like-for-like"))
    body += [_note(f"{row.name}: {note}") for row in rows for note in row.notes]
    body += list(sections)

    body.append("<h2>Data and evaluator</h2>")
    body.append(_key_values(data_summary, "metrics/data.json is missing."))
    body.append(_key_values(evaluator, "metrics/evaluator.json is missing."))
    body.append(f"<p>{html.escape(evaluator_line(evaluator))}</p>")

    body.append("<h2>Class histograms</h2>")
    histogram = histogram_png(rows)
    body.append(
        _image(histogram, "share of samples per class, as the evaluator classifies them")
        if histogram
        else _note("no class histograms: the evaluator has no classes or no metrics were found")
    )

    for row in rows[1:]:
        body.append(f'<h2 id="model-{html.escape(row.name)}">{html.escape(row.name)}</h2>')
        folder = samples_dir / row.name
        shown = [(folder / file, caption) for file, caption in IMAGES if (folder / file).is_file()]
        if not shown:
            body.append(_note(f"no sample images: {folder / 'grid.png'} is missing"))
        figures = [_image(path.read_bytes(), caption) for path, caption in shown]
        if shown and shown[0][0].name == "grid.png" and real_grids_dir is not None:
            figures[0] = beside_real(figures[0], real_grids_dir / f"{row.name}.png")
        body += figures
        curves = read_curves(logs_dir / row.name)
        body.append("<h3>Training curves</h3>")
        body.append(
            _image(curves_png(curves), f"{row.name}: logged losses by step")
            if curves
            else _note(f"no training logs under {logs_dir / row.name / 'plots' / 'metrics'}")
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>aigc report</title>"
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def beside_real(grid_figure: str, real_grid: Path) -> str:
    """The sample grid's figure and, to its right, the real images of the same classes."""
    if real_grid.is_file():
        real = _image(real_grid.read_bytes(), REAL_GRID_CAPTION)
    else:
        real = _note(f"no grid of real images: {real_grid} is missing")
    return f'<div class="pair">{grid_figure}{real}</div>'


# ---------------------------------------------------------------- the pull-request comment


def grid_links(
    samples_dir: Path,
    models: Iterable[str],
    link_base: str | None,
    real_grids_dir: Path | None = None,
) -> list[str]:
    """Markdown links to each model's sample grid (relative paths, or under `link_base`) and,
    with `real_grids_dir`, to the real images of the same classes beside it."""

    def target(path: Path) -> str:
        return path.as_posix() if not link_base else f"{link_base.rstrip('/')}/{path.as_posix()}"

    links = []
    for model in models:
        path = samples_dir / model / "grid.png"
        if not path.is_file():
            links.append(f"- {model}: no grid ({path} is missing)")
            continue
        line = f"- [{model}]({target(path)})"
        real = real_grids_dir / f"{model}.png" if real_grids_dir is not None else None
        if real is not None and real.is_file():
            line += f" · [real images of the classes the evaluator sees in it]({target(real)})"
        links.append(line)
    return links


def pull_request_markdown(
    rev: str,
    headline: str,
    metrics_diff: str,
    params_diff: str,
    summary: str | None,
    links: list[str],
) -> str:
    """The PR comment: the headline metrics of every row against `rev` (aigc/review.py), the
    param diff, the table, grid links, and DVC's complete metric diff folded at the end."""
    full = _table_or(metrics_diff, "No metric changed.")
    rows = max(0, len([line for line in full.splitlines() if line.startswith("|")]) - 2)
    parts = [
        f"## Quality: workspace vs `{rev}`",
        "",
        headline,
        "",
        f"## Params: workspace vs `{rev}`",
        _table_or(params_diff, "No param changed."),
        "",
        summary.strip() if summary else "reports/summary.md is missing (run the report stage).",
        "",
        "### Sample grids",
        *links,
        "",
        f"<details><summary>Every metric: DVC's complete diff ({rows} rows)</summary>",
        "",
        full,
        "",
        "</details>",
    ]
    return "\n".join(parts) + "\n"


def _table_or(markdown: str, empty: str) -> str:
    """DVC's markdown table, or `empty` when it has no rows (DVC prints a bare header then)."""
    lines = [line for line in markdown.strip().splitlines() if line.strip()]
    return (
        empty
        if len(lines) <= 2 and all(line.startswith("|") for line in lines)
        else "\n".join(lines)
    )

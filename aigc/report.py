"""The report: one self-contained HTML page and a markdown table of every model's numbers.

The page works offline and as a single file: sample grids are inlined as base64 PNG `data:`
URIs, charts (loss curves from the dvclive TSVs, class histograms) are drawn here with
matplotlib's Agg backend and inlined the same way, and the only CSS is a `<style>` block.
dvclive's own HTML and `dvc plots show` fetch vega from the web, so they render blank offline.

Rows are the real held-out images first (the floor), then the models in params.yaml order; a
model whose files are missing keeps its row with a visible note. FID and KID show "± SE"; a
second table repeats the metrics that depend on the sample count at the real row's N (the
`*_at_real_n` keys of `aigc.metrics`), where the rows compare like for like.
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


def markdown_table(rows: list[Row], columns: list[Column] = COLUMNS) -> str:
    lines = [
        "| Model | " + " | ".join(column.header for column in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for row in rows:
        name = f"**{row.name}**" if row.name == REAL else row.name
        lines.append(f"| {name} | " + " | ".join(cells(row, columns)) + " |")
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


def markdown_summary(rows: list[Row], evaluator: dict | None) -> str:
    """reports/summary.md: the table, the evaluator's accuracy and notes, for a PR comment."""
    parts = ["## aigc: sample quality", ""]
    parts.append(
        "Metrics in the evaluator's feature space; **real** is held-out real images (the floor)."
    )
    parts.append("FID and KID carry their standard errors (± SE, over fresh sets of samples).")
    parts += ["", markdown_table(rows), ""]
    parts += ["### Like for like: every row at the real row's N", "", like_for_like_text(rows)]
    parts += ["", markdown_table(rows, LIKE_FOR_LIKE), "", evaluator_line(evaluator)]
    notes = [f"- {row.name}: {note}" for row in rows for note in row.notes]
    if notes:
        parts += ["", "Notes:", *notes]
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


def _figure_png(figure) -> bytes:
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
    return _figure_png(figure)


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
    return _figure_png(figure)


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
"""


def html_table(rows: list[Row], columns: list[Column], table_id: str) -> str:
    """One results table, every text escaped; the real row is highlighted."""
    header = "".join(f"<th>{html.escape(column.header)}</th>" for column in columns)
    lines = [f'<table id="{table_id}"><thead><tr><th>Model</th>{header}</tr></thead><tbody>']
    for row in rows:
        values = "".join(f"<td>{html.escape(value)}</td>" for value in cells(row, columns))
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
) -> str:
    """The whole report page as one string (nothing outside it is fetched)."""
    body = ["<h1>aigc report</h1>"]
    body.append(
        "<p>Every metric is computed in the evaluator's feature space. The <b>real</b> row scores "
        "held-out real images the same way: the floor a model is measured against. FID and KID "
        "carry their standard errors (± SE, over fresh sets of samples).</p>"
    )
    body.append(html_table(rows, COLUMNS, "results"))
    body.append("<h3>Like for like: every row at the real row's N</h3>")
    body.append(f"<p>{html.escape(like_for_like_text(rows))}</p>")
    body.append(html_table(rows, LIKE_FOR_LIKE, "like-for-like"))
    body += [_note(f"{row.name}: {note}") for row in rows for note in row.notes]

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
        body += [_image(path.read_bytes(), caption) for path, caption in shown]
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


# ---------------------------------------------------------------- the pull-request comment


def grid_links(samples_dir: Path, models: Iterable[str], link_base: str | None) -> list[str]:
    """Markdown links to each model's sample grid (relative paths, or under `link_base`)."""
    links = []
    for model in models:
        path = samples_dir / model / "grid.png"
        if not path.is_file():
            links.append(f"- {model}: no grid ({path} is missing)")
            continue
        target = path.as_posix() if not link_base else f"{link_base.rstrip('/')}/{path.as_posix()}"
        links.append(f"- [{model}]({target})")
    return links


def pull_request_markdown(
    rev: str, metrics_diff: str, params_diff: str, summary: str | None, links: list[str]
) -> str:
    """The PR comment: DVC's metric and param diffs against `rev`, the table, grid links."""
    parts = [
        f"## Metrics: workspace vs `{rev}`",
        _table_or(metrics_diff, "No metric changed."),
        "",
        f"## Params: workspace vs `{rev}`",
        _table_or(params_diff, "No param changed."),
        "",
        summary.strip() if summary else "reports/summary.md is missing (run the report stage).",
        "",
        "### Sample grids",
        *links,
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

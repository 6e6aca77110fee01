"""The report's text section: the text ruler's table, each family's texts, the VAE's homotopy.

Every text on the page — samples, reconstructions, corpus lines, names — is HTML-escaped
(`html.escape`, quotes included), so a sample or a fortune holding `<script>` renders as the
characters it is. The markdown summary puts texts in no table cell: only numbers and names.

    text_html(metrics_dir, samples_dir, logs_dir, models) -> str   (HTML of the section)
    text_markdown(metrics_dir, logs_dir, models) -> str             (its table, markdown)

`metrics_dir` holds real.json, MODEL.json, evaluator.json (stages/evaluate_text.py,
stages/text_evaluator.py) and, one level up, text_data.json (stages/clean_text.py);
`samples_dir/MODEL/samples.json` comes from stages/sample_text.py; `logs_dir/MODEL` holds the
training summary (metrics.json) and sampling.json.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

COLUMNS = [  # (key, header, format)
    ("bits_per_character", "bits/char ↓", "{:.3f}"),
    ("frechet_distance", "FD ↓", "{:.2f}"),
    ("precision", "precision ↑", "{:.3f}"),
    ("recall", "recall ↑", "{:.3f}"),
    ("coverage", "coverage ↑", "{:.3f}"),
    ("classes_covered", "classes", "{:d}"),
    ("class_kl", "class KL ↓", "{:.3f}"),
    ("label_accuracy", "label acc. ↑", "{:.3f}"),
    ("distinct_2", "distinct-2 ↑", "{:.3f}"),
    ("self_bleu", "self-BLEU ↓", "{:.1f}"),
    ("copy_span_share", "copy rate ↓", "{:.3f}"),
    ("verbatim_share", "verbatim ↓", "{:.3f}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("characters_per_second", "sample chars/s ↑", "{:.0f}"),
]


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def text_rows(
    metrics_dir: Path, logs_dir: Path, models: list[str]
) -> list[tuple[str, dict | None]]:
    """(name, metrics with timings) for the real floor and each text model (None: missing)."""
    rows = [("real", read_json(metrics_dir / "real.json"))]
    for name in models:
        metrics = read_json(metrics_dir / f"{name}.json")
        if metrics is not None:
            training = read_json(logs_dir / name / "metrics.json") or {}
            sampling = read_json(logs_dir / name / "sampling.json") or {}
            metrics = {**metrics, "train_seconds": training.get("train_seconds"),
                       "characters_per_second": sampling.get("characters_per_second")}  # fmt: skip
        rows.append((name, metrics))
    return rows


def cell(metrics: dict | None, key: str, template: str) -> str:
    value = None if metrics is None else metrics.get(key)
    if value is None or isinstance(value, str):
        return "–"
    text = template.format(int(value) if template == "{:d}" else value)
    if key == "frechet_distance" and metrics.get("frechet_distance_se") is not None:
        text += f" ± {metrics['frechet_distance_se']:.2f}"
    if key == "bits_per_character" and metrics.get("bound") == "elbo":
        text = "≤ " + text  # the negative ELBO: a bound
    return text


def table_note(rows: list[tuple[str, dict | None]]) -> str:
    real = dict(rows).get("real") or {}
    unigram = real.get("unigram_bits_per_character")
    parts = [
        "Every row is scored by one text evaluator (a character CNN classifier of the "
        "categories, trained on the real training split) against the test split; the real row "
        "scores held-out real texts the same way (the floor). Bits per character are on the "
        "test split, each text's end counted as one character; ≤ marks the text VAE's "
        "negative ELBO, an upper bound. The copy rate is the share of samples sharing a run of "
        "`text_evaluate.copy_span` characters with a training text."
    ]
    if unigram is not None:
        parts.append(f"A unigram model of the training characters scores {unigram:.2f} bits/char.")
    return " ".join(parts)


def text_markdown(metrics_dir: Path, logs_dir: Path, models: list[str]) -> str:
    rows = text_rows(metrics_dir, logs_dir, models)
    if all(metrics is None for _, metrics in rows):
        return ""
    header = "| model | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = ["## Text", "", header, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, metrics in rows:
        lines.append(f"| {name} | " + " | ".join(cell(metrics, k, t) for k, _, t in COLUMNS) + " |")
    return "\n".join(lines) + "\n\n" + table_note(rows) + "\n"


def _pre(text: str) -> str:
    return f'<pre class="text">{html.escape(text, quote=True)}</pre>'


def samples_html(name: str, shown: dict | None) -> list[str]:
    if shown is None:
        return [f'<p class="note">{html.escape(name)}: no samples.json</p>']
    body = []
    for class_name, texts in shown.get("samples", {}).items():
        if class_name:
            body.append(f"<h4>{html.escape(name)} asked for class {html.escape(class_name)}</h4>")
        body += [_pre(text) for text in texts]
    if shown.get("reconstructions"):
        body.append("<h4>Reconstructions (held-out text, then its greedy decoding from mu)</h4>")
        for pair in shown["reconstructions"]:
            body.append(_pre(pair["text"]) + _pre("→ " + pair["reconstruction"]))
    if shown.get("homotopy"):
        path = shown["homotopy"]
        body.append("<h4>Homotopy: decodings along the line between two held-out texts' codes</h4>")
        body.append(_pre("from: " + path["from"]))
        body += [_pre(f"{index}. {text}") for index, text in enumerate(path["texts"])]
        body.append(_pre("to: " + path["to"]))
    return body


def text_html(metrics_dir: Path, samples_dir: Path, logs_dir: Path, models: list[str]) -> str:
    rows = text_rows(metrics_dir, logs_dir, models)
    body = ['<h2 id="text">Text</h2>']
    if all(metrics is None for _, metrics in rows):
        return "\n".join(body + ['<p class="note">no text metrics under metrics/text</p>'])
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in COLUMNS)
    lines = [f'<table class="text-results"><tr><th>model</th>{head}</tr>']
    for name, metrics in rows:
        cells = "".join(f"<td>{html.escape(cell(metrics, k, t))}</td>" for k, _, t in COLUMNS)
        lines.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    body.append("\n".join(lines) + "</table>")
    body.append(f"<p>{html.escape(table_note(rows))}</p>")
    data = read_json(metrics_dir.parent / "text_data.json")
    evaluator = read_json(metrics_dir / "evaluator.json")
    facts = []
    if data:
        facts.append(f"corpus: {data.get('collected')} texts collected, {data.get('kept')} kept, "
                     f"{data.get('rejected')} rejected with their reasons")  # fmt: skip
    if evaluator:
        facts.append(f"text evaluator: test accuracy {evaluator.get('test_accuracy', 0):.3f} "
                     f"(chance {evaluator.get('chance', 0):.3f})")  # fmt: skip
    if facts:
        body.append(f"<p>{html.escape('; '.join(facts))}.</p>")
    for name in models:
        body.append(f'<h3 id="text-{html.escape(name)}">{html.escape(name)}</h3>')
        body += samples_html(name, read_json(samples_dir / name / "samples.json"))
    return "\n".join(body)

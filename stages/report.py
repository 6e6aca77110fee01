"""Stage `report`: one self-contained HTML page and a markdown table of every model.

Reads `--metrics` (real.json, MODEL.json, data.json, evaluator.json), `--samples`
(reports/samples/MODEL/*.png from the sample stage), `--real-grids` (optional:
reports/real_grids/MODEL.png from the evaluate stage, shown beside each sample grid) and
`--logs` (per model: the dvclive logs, whose summary holds the training time, and
sampling.json, the sampling speed), for the models listed in params.yaml `models`. A model with
missing files gets a visible note. The main table opens with a verdict per model against the
real floor (aigc.report.VerdictRule). The privacy section follows: every row's
membership-inference audit and DP budget, and, when `--privacy` (metrics/privacy_sweep.json, from
`make privacy-sweep`) exists, the privacy-utility table (aigc/privacy_report.py). Then the
training data of this run (metrics/training_data.json, from the degrade stage) and, when
`--sweep` (metrics/sweep.json, from `make sweep`) exists, the data experiments' curves and tables
(aigc/sweep_report.py). With `--text-metrics` (metrics/text), the text section follows
(aigc/text_report.py): the text ruler's table for params.yaml `text_models` and the real floor,
each family's texts from `--text-samples` (reports/text/samples), the VAE's homotopy, every text
HTML-escaped.

Writes `--out` (HTML; images and charts inlined, nothing fetched) and `--summary` (markdown, for
a pull-request comment).

    python -m stages.report --metrics metrics --samples reports/samples \
        --real-grids reports/real_grids --logs logs --privacy metrics/privacy_sweep.json \
        --sweep metrics/sweep.json --text-metrics metrics/text \
        --text-samples reports/text/samples --text-logs logs/text \
        --out reports/index.html --summary reports/summary.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aigc.errors import exit_on_error
from aigc.files import write_text
from aigc.params import read_params
from aigc.privacy_report import privacy_html, privacy_markdown, read_sweep
from aigc.report import build_html, load_rows, markdown_summary, model_names, read_json
from aigc.sweep_report import read_rows, section_html, section_markdown
from aigc.text_report import text_html, text_markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", required=True, help="folder of metrics JSON files")
    parser.add_argument("--samples", required=True, help="folder of per-model sample images")
    parser.add_argument("--real-grids", help="folder of per-model grids of real images")
    parser.add_argument("--logs", required=True, help="folder of per-model dvclive logs")
    parser.add_argument("--privacy", help="privacy-utility rows of make privacy-sweep (JSON)")
    parser.add_argument("--sweep", help="data-experiment rows of make sweep (JSON)")
    parser.add_argument("--text-metrics", help="folder of the text ruler's JSON files")
    parser.add_argument("--text-samples", help="folder of per-model samples.json (text)")
    parser.add_argument("--text-logs", help="folder of per-model text training logs")
    parser.add_argument("--out", required=True, help="HTML page to write")
    parser.add_argument("--summary", required=True, help="markdown table to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        models = model_names(args.params)
        text_models = list(read_params(args.params).get("text_models", []))

    metrics_dir = Path(args.metrics)
    rows = load_rows(metrics_dir, models, Path(args.logs))
    data_summary = read_json(metrics_dir / "data.json")
    evaluator = read_json(metrics_dir / "evaluator.json")
    real_grids = Path(args.real_grids) if args.real_grids else None
    sweep = read_sweep(Path(args.privacy)) if args.privacy else []
    data_sweep = read_rows(args.sweep) if args.sweep else []
    training_data = read_json(metrics_dir / "training_data.json")
    text_section, text_summary = "", ""
    if args.text_metrics:
        text_dir, text_logs = Path(args.text_metrics), Path(args.text_logs or "logs/text")
        samples = Path(args.text_samples or "reports/text/samples")
        text_section = text_html(text_dir, samples, text_logs, text_models)
        text_summary = text_markdown(text_dir, text_logs, text_models)
    page = build_html(
        rows, data_summary, evaluator, Path(args.samples), Path(args.logs), real_grids,
        sections=[privacy_html(sweep, rows), section_html(data_sweep, training_data),
                  text_section],
    )  # fmt: skip
    summary = markdown_summary(rows, evaluator, sections=[
        privacy_markdown(sweep, rows), section_markdown(data_sweep, training_data), text_summary
    ])  # fmt: skip
    with exit_on_error():  # an output not writable
        write_text(args.out, page)
        write_text(args.summary, summary)
    for row in rows:
        for note in row.notes:
            print(f"note: {row.name}: {note}")
    print(f"report: {args.out} ({len(page) / 1e6:.1f} MB), {args.summary}")


if __name__ == "__main__":
    main()

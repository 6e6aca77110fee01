"""The report's privacy section: every model's membership-inference audit and DP budget, and
the privacy-utility table of `make privacy-sweep` (metrics/privacy_sweep.json: inside the
report stage's `metrics` dependency, so a new sweep re-runs the report).

- `AUDIT_COLUMNS`: per model (and the real floor, whose AUC is 0.5 up to noise), the epsilon it
  was trained with ("–" = not private), the strongest attack's AUC and TPR at 1 % FPR, each
  attack's AUC, and the copy rate (aigc/membership.py).
- `privacy_rows`: the sweep's experiments (aigc/experiments.py rows) as one row per family
  and target epsilon, newest first; `SWEEP_COLUMNS` shows them, FID beside epsilon.

`privacy_markdown` and `privacy_html` render both, every text escaped (experiment names and
errors come from DVC).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from aigc.report import Column, Row, html_table, markdown_table

AUDIT_COLUMNS = [
    Column("privacy_epsilon", "ε", "{:.2f}"),
    Column("membership_auc", "MIA AUC", "{:.3f}"),
    Column("membership_tpr_at_fpr", "TPR @ 1 % FPR", "{:.3f}"),
    Column("membership_attack", "strongest attack", "{}"),
    Column("membership_model_auc", "model attack AUC", "{:.3f}"),
    Column("membership_distance_auc", "distance attack AUC", "{:.3f}"),
    Column("copy_rate", "Copy rate ↓", "{:.3f}"),
]
SWEEP_COLUMNS = [
    Column("epsilon_target", "target ε", "{}"),
    Column("epsilon", "ε spent", "{:.2f}"),
    Column("noise_multiplier", "σ", "{:.3f}"),
    Column("fid", "FID ↓", "{:.2f}", "fid_se"),
    Column("precision", "Precision ↑", "{:.3f}"),
    Column("recall", "Recall ↑", "{:.3f}"),
    Column("coverage", "Coverage ↑", "{:.3f}"),
    Column("membership_auc", "MIA AUC", "{:.3f}"),
    Column("membership_tpr_at_fpr", "TPR @ 1 % FPR", "{:.3f}"),
    Column("train_seconds", "Train s", "{:.0f}"),
    Column("experiment", "experiment", "{}"),
]
AUDIT_TEXT = (
    "Membership inference: can an attacker tell a model's training images from held-out ones? "
    "AUC 0.5 is a coin toss; the real row (held-out images in place of samples) is the floor. "
    "TPR @ 1 % FPR is the share of training images caught by a threshold that flags at most "
    "1 % of held-out ones. ε is the DP-SGD budget a model was trained with (– = none)."
)
SWEEP_TEXT = (
    "Privacy–utility (`make privacy-sweep`): each family retrained at a target ε on a shorter "
    "budget than the default run's, the same at every point; ε = ∞ is the same budget without "
    "DP-SGD. `dvc exp apply EXPERIMENT` restores a point."
)


def privacy_rows(family: str, experiments: list, profile: dict) -> list[dict]:
    """One row per target epsilon of `family`, from the newest experiment carrying `profile`'s
    values (rows of aigc.experiments.collect, newest first); a failed run keeps its row."""
    rows, seen = [], set()
    for experiment in experiments:
        if any(experiment.params.get(key) != value for key, value in profile.items()):
            continue  # not one of this family's sweep points
        target = experiment.params.get(f"train.{family}.privacy.epsilon")
        if target in seen:
            continue
        seen.add(target)
        found = {key.split(":", 1)[1]: value for key, value in experiment.metrics.items()}
        rows.append({
            "family": family,
            "experiment": experiment.name,
            "epsilon_target": target if target else "∞",
            "epsilon": found.get("privacy_epsilon"),
            "noise_multiplier": found.get("privacy_noise_multiplier"),
            **{key: found.get(key) for key in ("fid", "fid_se", "precision", "recall",
               "coverage", "membership_auc", "membership_tpr_at_fpr", "train_seconds")},
            "error": experiment.error,
        })  # fmt: skip
    return sorted(rows, key=lambda row: _order(row["epsilon_target"]))


def _order(target) -> float:
    return float("inf") if target == "∞" else float(target)


def read_sweep(path: Path) -> list[dict]:
    """The rows `make privacy-sweep` wrote; [] when there is no (readable) file."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def sweep_table_rows(sweep: list[dict]) -> list[Row]:
    return [Row(row["family"], row, [row["error"]] if row.get("error") else []) for row in sweep]


def privacy_markdown(sweep: list[dict], rows: list[Row] | None = None) -> str:
    """The section in markdown: the audit of `rows` (when given), then the sweep's table."""
    parts = []
    if rows is not None:
        parts += ["### Privacy: membership inference", "", AUDIT_TEXT, ""]
        parts += [markdown_table(rows, AUDIT_COLUMNS), ""]
    if sweep:
        table_rows = sweep_table_rows(sweep)
        parts += [
            "### Privacy–utility",
            "",
            SWEEP_TEXT,
            "",
            markdown_table(table_rows, SWEEP_COLUMNS),
        ]
        parts += [f"- {row.name} ε={row.metrics['epsilon_target']}: {note}"
                  for row in table_rows for note in row.notes]  # fmt: skip
    return "\n".join(parts)


def privacy_html(sweep: list[dict], rows: list[Row]) -> str:
    """The section as HTML: the audit of every row, then the sweep's table when there is one."""
    parts = ["<h2>Privacy</h2>", f"<p>{html.escape(AUDIT_TEXT)}</p>"]
    parts.append(html_table(rows, AUDIT_COLUMNS, "membership"))
    if sweep:
        table_rows = sweep_table_rows(sweep)
        parts += ["<h3>Privacy–utility</h3>", f"<p>{html.escape(SWEEP_TEXT)}</p>"]
        parts.append(html_table(table_rows, SWEEP_COLUMNS, "privacy-utility"))
        parts += [f"<p class=\"note\">{html.escape(row.name)}: {html.escape(note)}</p>"
                  for row in table_rows for note in row.notes]  # fmt: skip
    return "\n".join(parts)

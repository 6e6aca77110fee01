"""What a reviewer reads first: each row's quality metrics, base -> head, beside their noise.

`make pr-report` leads with `headline_markdown`: one compact table per model (and the real
floor) of the headline metrics, each with its value at the base revision and in the
workspace, the change, and a verdict that says "better" or "worse" only where the change
exceeds `SIGMAS` times the combined standard error of the two values (else "within noise"):

- FID and KID carry their own standard errors (`fid_se`, the bootstrap over samples; `kid_se`,
  over subsets);
- precision, recall, coverage and the copy rate are proportions, with the binomial error
  sqrt(p (1 - p) / n) over the n items they count (`manifold_samples` for precision,
  `reference_samples` for recall and coverage, `copy_samples` for the copy rate);
- classes covered and class KL have no error estimate: their change is shown without a verdict.

The input is `dvc metrics diff --json --all REV` ({path: {key: {"old", "new", "diff"}}}), so base
and head come from DVC itself; every other metric stays in DVC's complete diff, folded below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SIGMAS = 2.0


@dataclass(frozen=True)
class Headline:
    key: str
    header: str
    template: str
    lower_is_better: bool | None  # None: no direction (shown, never judged)
    error: str | None = None  # key of its standard error
    count: str | None = None  # key of the n of a proportion


HEADLINES = [
    Headline("fid", "FID ↓", "{:.2f}", True, error="fid_se"),
    Headline("kid_mean", "KID ↓", "{:.4f}", True, error="kid_se"),
    Headline("precision", "Precision ↑", "{:.3f}", False, count="manifold_samples"),
    Headline("recall", "Recall ↑", "{:.3f}", False, count="reference_samples"),
    Headline("coverage", "Coverage ↑", "{:.3f}", False, count="reference_samples"),
    Headline("copy_rate", "Copy rate ↓", "{:.3f}", True, count="copy_samples"),
    Headline("classes_covered", "Classes ↑", "{:.0f}", None),
    Headline("class_kl", "Class KL ↓", "{:.3f}", None),
]


def standard_error(values: dict, headline: Headline, side: str) -> float | None:
    """The standard error of `headline` at `side` ("old" or "new") of a file's diff."""
    value = _side(values, headline.key, side)
    if value is None:
        return None
    if headline.error:
        return _side(values, headline.error, side)
    if headline.count:
        count = _side(values, headline.count, side)
        if count and 0 <= value <= 1:
            return math.sqrt(value * (1 - value) / count)
    return None


def _side(values: dict, key: str, side: str):
    found = (values.get(key) or {}).get(side)
    return found if isinstance(found, (int, float)) and not isinstance(found, bool) else None


def verdict(values: dict, headline: Headline) -> str:
    old, new = _side(values, headline.key, "old"), _side(values, headline.key, "new")
    if old is None or new is None:
        return "new" if old is None and new is not None else ""
    if new == old:
        return "same"
    errors = [standard_error(values, headline, side) for side in ("old", "new")]
    if headline.lower_is_better is None or None in errors:
        return ""
    if abs(new - old) <= SIGMAS * math.hypot(*errors):
        return "within noise"
    better = (new < old) == headline.lower_is_better
    return "**better**" if better else "**worse**"


def _shown(value, template: str) -> str:
    return "–" if value is None else template.format(value)


def _cell(value, error, headline: Headline) -> str:
    shown = _shown(value, headline.template)
    return f"{shown} ± {headline.template.format(error)}" if error is not None else shown


def headline_line(values: dict, headline: Headline) -> str:
    """The table line of one metric: base, head (± their error), change, verdict."""
    old, new = (_side(values, headline.key, side) for side in ("old", "new"))
    cells = [
        _cell(value, standard_error(values, headline, side) if headline.error else None, headline)
        for value, side in ((old, "old"), (new, "new"))
    ]
    change = "–"
    if old is not None and new is not None:
        change = ("+" if new > old else "") + headline.template.format(new - old)
    return (
        f"| {headline.header} | {cells[0]} | {cells[1]} | {change} | {verdict(values, headline)} |"
    )


def headline_markdown(diff: dict, rows: list[str], rev: str) -> str:
    """One table per row name in `rows` (metrics/NAME.json) whose headline metrics changed."""
    parts = []
    for name in rows:
        values = diff.get(f"metrics/{name}.json") or {}
        present = [headline for headline in HEADLINES if headline.key in values]
        if not present:
            continue
        if all(_side(values, h.key, "old") == _side(values, h.key, "new") for h in present):
            parts.append(f"- {name}: no headline metric changed.")
            continue
        header = f"| {name} | `{rev}` | workspace | change | beyond {SIGMAS:g} SE |"
        lines = [header, "|---|---:|---:|---:|---|"]
        lines += [headline_line(values, headline) for headline in present]
        parts += ["", *lines, ""]
    return "\n".join(parts).strip() or "No headline metric changed."

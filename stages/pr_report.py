"""The markdown a pull request gets: headline metrics first, then params, the table, grids.

Not a DVC stage: `make pr-report` runs it locally, and CI runs it to comment on a pull request.
Leads with one compact table per model (and the real floor) of the quality metrics, base ->
workspace, with the change and whether it exceeds the metric's own uncertainty (aigc/review.py,
from `dvc metrics diff --json --all REV`); then `dvc params diff --md REV`, `--summary`
(reports/summary.md), links to each model's sample grid and the grid of real images of the
same classes beside it, and DVC's complete `dvc metrics diff --md REV` folded in <details>.
Prints the markdown; `--out` also writes it to a file.

    python -m stages.pr_report                       # against HEAD
    python -m stages.pr_report --rev origin/main --out comment.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from aigc.errors import exit_on_error
from aigc.files import write_text
from aigc.report import REAL, grid_links, model_names, pull_request_markdown
from aigc.review import headline_markdown


def dvc_output(*command: str) -> tuple[str, str | None]:
    """`dvc COMMAND` output and None, or "" and a quoted note saying why it failed."""
    result = subprocess.run([sys.executable, "-m", "dvc", *command], capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
        return "", f"> `dvc {' '.join(command)}` failed: {reason[-1]}"
    return result.stdout, None


def dvc_markdown(*command: str) -> str:
    """`dvc COMMAND --md` output; a failure becomes a quoted note instead of an exit."""
    output, failure = dvc_output(*command, "--md")
    return failure or output


def headline(rev: str, rows: list[str]) -> str:
    output, failure = dvc_output("metrics", "diff", "--json", "--all", rev)
    if failure:
        return failure
    try:
        diff = json.loads(output or "{}")
    except ValueError:
        return "> `dvc metrics diff --json` printed no JSON"
    return headline_markdown(diff if isinstance(diff, dict) else {}, rows, rev)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision to diff against")
    parser.add_argument("--summary", default="reports/summary.md")
    parser.add_argument("--samples", default="reports/samples", help="per-model sample images")
    parser.add_argument("--real-grids", default="reports/real_grids", help="real-image grids")
    parser.add_argument("--link-base", help="URL prefix for grid links (default: relative)")
    parser.add_argument("--out", help="also write the markdown here")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        models = model_names(args.params)

    summary_path = Path(args.summary)
    markdown = pull_request_markdown(
        args.rev,
        headline(args.rev, [REAL, *models]),
        dvc_markdown("metrics", "diff", args.rev),
        dvc_markdown("params", "diff", args.rev),
        summary_path.read_text() if summary_path.is_file() else None,
        grid_links(Path(args.samples), models, args.link_base, Path(args.real_grids)),
    )
    print(markdown, end="")
    if args.out:
        with exit_on_error():
            write_text(args.out, markdown)


if __name__ == "__main__":
    main()

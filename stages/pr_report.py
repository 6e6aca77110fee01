"""The markdown a pull request gets: DVC's metric and param diffs, the summary table, grids.

Not a DVC stage: `make pr-report` runs it locally, and CI runs it to comment on a pull request.
Runs `dvc metrics diff --md REV` and `dvc params diff --md REV` (the workspace against the git
revision REV), appends `--summary` (reports/summary.md) and links each model's sample grid
and the grid of real images of the same classes beside it.
Prints the markdown; `--out` also writes it to a file.

    python -m stages.pr_report                       # against HEAD
    python -m stages.pr_report --rev origin/main --out comment.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from aigc.errors import exit_on_error
from aigc.files import write_text
from aigc.report import grid_links, model_names, pull_request_markdown


def dvc_markdown(*command: str) -> str:
    """`dvc COMMAND --md` output; a failure becomes a quoted note instead of an exit."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *command, "--md"], capture_output=True, text=True
    )
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
        return f"> `dvc {' '.join(command)}` failed: {reason[-1]}"
    return result.stdout


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

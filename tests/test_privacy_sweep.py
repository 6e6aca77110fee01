"""The privacy sweep end to end: tiny vae models, two points (without DP-SGD and at epsilon 3),
queued with `dvc exp run --queue`, run by the real DVC queue in a temp git repository, and
collected from `dvc exp show --json` into the table the report shows."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import run_command

pytestmark = pytest.mark.slow


def test_a_two_point_sweep_runs_through_dvcs_queue_into_the_table(repository):
    output = run_command(
        sys.executable, "-m", "stages.privacy_sweep", "--families", "vae", "--epsilons", "0", "3",
        "--steps", "12", "--samples", "64", cwd=repository,
    )  # fmt: skip
    assert output.count("Queued experiment") == 2
    rows = json.loads((repository / "metrics/privacy_sweep.json").read_text())
    assert [row["epsilon_target"] for row in rows] == [3, "∞"]
    private, plain = rows
    assert all(row["error"] is None and row["experiment"] for row in rows)
    assert 0 < private["epsilon"] <= 3 and private["noise_multiplier"] > 0
    assert plain["epsilon"] is None and plain["noise_multiplier"] is None
    for row in rows:
        assert row["fid"] > 0 and 0 <= row["membership_auc"] <= 1
    shown = run_command("dvc", "exp", "list", "--name-only", cwd=repository).split()
    assert {row["experiment"] for row in rows} <= set(shown)
    table = (repository / "reports/privacy.md").read_text()
    assert private["experiment"] in table and "| vae | ∞ |" in table

"""The data sweep end to end through DVC's real queue, on tiny vae models: a quantity grid of two
points and a bad value, collected into the table and the reports; and CPU determinism across
the queue's temporary workspaces (a queued point equals a serial `dvc repro` of the same params
in another copy of the repository, and two queued experiments with the same params agree)."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from conftest import run_command

from aigc.experiments import collect, dvc_exp_show_json, run_queue

pytestmark = pytest.mark.slow

QUALITY = ["fid", "precision", "recall", "coverage", "classes_covered", "class_kl"]


def test_a_sweep_runs_through_dvcs_queue_and_matches_a_serial_repro(
    repository, tmp_path_factory, monkeypatch
):
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    serial = tmp_path_factory.mktemp("serial") / "repository"
    shutil.copytree(repository, serial, symlinks=True)  # its own cache: nothing is shared
    run_command("dvc", "repro", "evaluate@vae", cwd=serial)
    expected = json.loads((serial / "metrics/vae.json").read_text())

    # --steps 0 and --samples 64 are the tiny params' own values: point 1 is the serial run
    output = run_command(
        sys.executable, "-m", "stages.sweep", "--families", "vae", "--grids", "quantity",
        "--fractions", "0.5", "1", "1.5", "--steps", "0", "--samples", "64", cwd=repository,
    )  # fmt: skip
    assert output.count("Queued experiment") == 3
    rows = json.loads((repository / "metrics/sweep.json").read_text())
    assert [row["train_fraction"] for row in rows] == [0.5, 1, 1.5]
    half, full, bad = rows
    assert bad["error"].startswith("failed: params.yaml: split.train_fraction = 1.5 is out of")
    assert bad["families"]["vae"]["fid"] is None
    for row in (half, full):
        assert row["error"] is None and row["experiment"] and row["grids"][0] == "quantity"
        assert row["families"]["vae"]["fid"] > 0 and 0 <= row["families"]["vae"]["coverage"] <= 1
    assert half["images"] * 2 == full["images"]
    assert {key: full["families"]["vae"][key] for key in QUALITY} == {
        key: expected[key] for key in QUALITY
    }  # the queue's workspace gives the serial run's numbers, bit for bit

    markdown = (repository / "reports/experiments.md").read_text()
    page = (repository / "reports/experiments.html").read_text()
    for row in rows:
        assert row["experiment"] in markdown and row["experiment"] in page
    assert 'id="quantity-curves" src="data:image/png;base64,' in page
    assert (
        "![FID, recall and coverage against train_fraction](experiments_quantity.png)" in markdown
    )
    assert (repository / "reports/experiments_quantity.png").read_bytes()[:4] == b"\x89PNG"

    # a second experiment with the half point's params, forced to recompute every stage
    run_command("dvc", "exp", "run", "--queue", "-f", "evaluate@vae",
                "-S", "split.train_fraction=0.5", cwd=repository)  # fmt: skip
    run_queue(jobs=1, poll=2, log=lambda _: None)
    metrics = [f"metrics/vae.json:{key}" for key in QUALITY]
    found = collect(dvc_exp_show_json(), params=["split.train_fraction"], metrics=metrics)
    halves = [row.metrics for row in found if row.params["split.train_fraction"] == 0.5]
    assert len(halves) == 2 and halves[0] == halves[1] and None not in halves[0].values()

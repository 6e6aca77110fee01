"""The whole pipeline under DVC, end to end, on tiny params and the procedural `shapes` source.

These are the slow tests: they run `dvc repro` and `dvc exp run` in a temp git repository and
check what ran, what was written, and that an unchanged pipeline does nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MODELS = ["gan", "dcgan", "vae", "vaegan", "ddpm"]


def run(*command: str, cwd: Path) -> str:
    """Run a command with the test's Python first on PATH; return stdout+stderr, fail loudly."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(DVC_NO_ANALYTICS="1", DVC_STUDIO_OFFLINE="1", OMP_NUM_THREADS="2")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-4000:]}"
    return output


def stages_run(output: str) -> set[str]:
    """The stages DVC says it ran (not those it skipped or restored)."""
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture
def repository(project):
    run("git", "init", "-q", cwd=project)
    run("git", "config", "user.email", "test@example.com", cwd=project)
    run("git", "config", "user.name", "test", cwd=project)
    run("dvc", "init", "-q", cwd=project)
    run("dvc", "config", "core.analytics", "false", cwd=project)
    (project / ".gitignore").write_text("/.resume/\n__pycache__/\n")
    run("git", "add", "-A", cwd=project)
    run("git", "commit", "-qm", "tiny pipeline", cwd=project)
    return project


def test_repro_runs_everything_then_nothing_and_an_experiment_runs_one_branch(repository):
    first = run("dvc", "repro", cwd=repository)
    expected = {"collect", "clean", "split", "augment", "evaluator", "evaluate-real", "report"}
    for stage in ("train", "sample", "evaluate"):
        expected |= {f"{stage}@{model}" for model in MODELS}
    assert stages_run(first) == expected

    data = json.loads((repository / "metrics/data.json").read_text())
    assert data["collected"] == data["kept"] + data["rejected"]
    for name in ["real", *MODELS]:
        metrics = json.loads((repository / f"metrics/{name}.json").read_text())
        assert metrics["fid"] >= 0
    assert (repository / "reports/index.html").stat().st_size > 1000
    for model in MODELS:
        assert (repository / f"reports/samples/{model}/grid.png").exists()

    second = run("dvc", "repro", cwd=repository)
    assert stages_run(second) == set()

    run("git", "add", "-A", cwd=repository)
    run("git", "commit", "-qm", "baseline results", cwd=repository)
    experiment = run("dvc", "exp", "run", "-S", "train.dcgan.learning_rate=0.0001", cwd=repository)
    assert stages_run(experiment) == {"train@dcgan", "sample@dcgan", "evaluate@dcgan", "report"}

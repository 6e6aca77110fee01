"""The whole pipeline under DVC, end to end, on tiny params and the procedural `shapes` source.

These are the slow tests: they run `dvc repro` and `dvc exp run` in a temp git repository and
check what ran, what was written, and that an unchanged pipeline does nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest
from conftest import run_command as run

pytestmark = pytest.mark.slow

MODELS = ["gan", "dcgan", "vae", "vaegan", "ddpm"]
TEXT_MODELS = ["charrnn", "textvae", "gpt"]


def stages_run(output: str) -> set[str]:
    """The stages DVC says it ran (not those it skipped or restored)."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_repro_runs_everything_then_nothing_and_an_experiment_runs_one_branch(repository):
    first = run("dvc", "repro", cwd=repository)
    expected = {"collect", "clean", "split", "degrade", "augment", "evaluator", "report"}
    expected |= {"evaluate-real", "collect-text", "clean-text", "split-text"}
    for stage in ("train", "sample", "evaluate"):
        expected |= {f"{stage}@{model}" for model in MODELS}
        expected |= {f"{stage}-text@{model}" for model in TEXT_MODELS}
    expected |= {"text-evaluator", "evaluate-text-real"}
    assert stages_run(first) == expected

    data = json.loads((repository / "metrics/data.json").read_text())
    assert data["collected"] == data["kept"] + data["rejected"] == 8 * 40  # tiny: 8 shapes x 40
    check_metrics_and_report(repository)

    second = run("dvc", "repro", cwd=repository)
    assert stages_run(second) == set()

    # sampling again gives the same bytes: only the uncached timing changes, and the report
    run("dvc", "repro", "--force", "--single-item", "sample@gan", cwd=repository)
    assert stages_run(run("dvc", "repro", cwd=repository)) == {"report"}

    run("git", "add", "-A", cwd=repository)
    run("git", "commit", "-qm", "baseline results", cwd=repository)
    experiment = run("dvc", "exp", "run", "-S", "train.dcgan.learning_rate=0.0001", cwd=repository)
    assert stages_run(experiment) == {"train@dcgan", "sample@dcgan", "evaluate@dcgan", "report"}
    experiment = run("dvc", "exp", "run", "-S", "train.gpt.layers=2", cwd=repository)
    assert stages_run(experiment) == {
        "train-text@gpt", "sample-text@gpt", "evaluate-text@gpt", "report"}  # fmt: skip


def check_metrics_and_report(repository: Path) -> None:
    """Every row's metrics are real numbers on the right sample counts, the real row is the
    floor, timings are in the logs (not the metrics), and the report shows every row."""
    metrics = {
        name: json.loads((repository / f"metrics/{name}.json").read_text())
        for name in ["real", *MODELS]
    }
    for name, values in metrics.items():
        assert math.isfinite(values["fid"]) and values["fid"] > 0, name
        assert values["fid_samples"] == values["samples"] and 0 <= values["coverage"] <= 1
        assert not {"images_per_second", "train_seconds", "sampling_seconds"} & values.keys()
    for model in MODELS:
        assert metrics[model]["samples"] == 64  # tiny params: sample.num_samples
        assert metrics["real"]["fid"] < metrics[model]["fid"], model  # held-out real: the floor
        sampling = json.loads((repository / f"logs/{model}/sampling.json").read_text())
        training = json.loads((repository / f"logs/{model}/metrics.json").read_text())
        assert sampling["images_per_second"] > 0 and training["train_seconds"] > 0

    page = (repository / "reports/index.html").read_text()
    table = page[page.index('<table id="results">') : page.index("</table>")]
    assert re.findall(r"<tr[^>]*><td>([^<]+)</td>", table) == ["real", *MODELS]
    for name, values in metrics.items():
        assert f"<td>{values['fid']:.2f} ± {values['fid_se']:.2f}</td>" in table, name
    grids = page.count("data:image/png;base64,")
    assert grids >= 2 * len(MODELS)  # every model's grid and loss curves, inlined
    lines = (repository / "reports/summary.md").read_text().splitlines()
    first = lines.index(next(line for line in lines if line.startswith("| Model |")))
    end = next(i for i in range(first, len(lines)) if not lines[i].startswith("|"))
    table = [[cell.strip() for cell in line.split("|")] for line in lines[first:end]]
    header, rows = table[0], {row[1]: row for row in table[2:]}  # the results table
    assert list(rows) == ["**real**", *MODELS]
    for model in MODELS:
        fid = f"{metrics[model]['fid']:.2f} ± {metrics[model]['fid_se']:.2f}"
        assert rows[model][header.index("FID ↓")] == fid
        assert rows[model][header.index("Images/s ↑")] != "–"  # from logs/MODEL/sampling.json
        assert rows[model][header.index("Train s")] != "–"  # from logs/MODEL/metrics.json

    text = {name: json.loads((repository / f"metrics/text/{name}.json").read_text())
            for name in ["real", *TEXT_MODELS]}  # fmt: skip
    for name in TEXT_MODELS:
        assert text[name]["num_samples"] == 24  # tiny params: text_sample.num_samples
        assert 0 < text[name]["bits_per_character"] < 10 and text[name]["copy_span_share"] >= 0
    section = page[page.index('<h2 id="text">') :]
    assert all(f'<h3 id="text-{name}">' in section for name in TEXT_MODELS)
    assert "## Text" in "\n".join(lines)


def test_a_forced_rerun_keeps_the_checkpoints_bytes(repository):
    run("dvc", "repro", "train@gan", "evaluator", cwd=repository)
    paths = [repository / "models/gan/model.pt", repository / "models/evaluator.pt"]
    before = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]
    for stage in ("train@gan", "evaluator"):
        run("dvc", "repro", "--force", "--single-item", stage, cwd=repository)
    assert [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths] == before

"""The report stage on a tiny fake tree: the HTML is self-contained and renders in headless
Chromium (table rows and inlined grids with real pixels), the markdown summary has the same
rows, missing files get visible notes, and the PR markdown is assembled from DVC's diffs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import random_images

from aigc.images import save_grid
from aigc.report import grid_links, pull_request_markdown, read_curves

CHROMIUM = "/usr/bin/chromium"
MODELS = ["gan", "dcgan", "vae"]  # vae has no files at all: its row must say so


def metrics_for(name: str, fid: float) -> dict:
    shares = [0.3, 0.3, 0.4] if name != "real" else [1 / 3] * 3
    values = {
        "name": name,
        "fid": fid,
        "kid_mean": fid / 1000,
        "kid_std": 0.001,
        "inception_score_mean": 2.5,
        "precision": 0.8,
        "recall": 0.7,
        "density": 0.9,
        "coverage": 0.85,
        "classes_covered": 3,
        "class_kl": 0.02,
        "copy_rate": 0.01,
        "reconstruction_ssim": None,
        "reconstruction_psnr": None,
        "samples": 64,
    }
    for index, (label, share) in enumerate(zip(["ankle boot", "bag", "coat"], shares, strict=True)):
        values[f"class_share_{index:02d}_{label.replace(' ', '_')}"] = share
    return values


def write_fake_tree(root) -> None:
    (root / "metrics").mkdir(parents=True)
    for name, fid in (("real", 1.5), ("gan", 80.0), ("dcgan", 40.0)):
        (root / "metrics" / f"{name}.json").write_text(json.dumps(metrics_for(name, fid)))
    (root / "metrics/data.json").write_text(
        json.dumps({"collected": 120, "kept": 100, "rejected": 20, "reasons": {"duplicate": 20}})
    )
    (root / "metrics/evaluator.json").write_text(
        json.dumps(
            {
                "kind": "classifier",
                "test_accuracy": 0.93,
                "val_accuracy": 0.94,
                "epochs": 5,
                "seconds": 80,
            }
        )
    )
    save_grid(root / "reports/samples/gan/grid.png", random_images(16, size=16, seed=1))
    save_grid(root / "reports/samples/gan/interpolation.png", random_images(8, size=16, seed=2))
    save_grid(root / "reports/samples/dcgan/grid.png", random_images(16, 3, size=16, seed=3))
    curves = (("train/d_loss", [1.2, 0.9, 0.7]), ("g_loss", [2.0, 1.5, 1.4]), ("epoch", [0, 0, 1]))
    for name, values in curves:
        path = root / "logs/gan/plots/metrics" / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = "".join(f"{step}\t{value}\n" for step, value in enumerate(values))
        path.write_text(f"step\t{name.split('/')[-1]}\n{rows}")
    # timings live in the uncached logs: the dvclive summary and the sample stage's sampling.json
    (root / "logs/gan/metrics.json").write_text(json.dumps({"train_seconds": 161.4, "step": 3}))
    (root / "logs/gan/sampling.json").write_text(json.dumps({"images_per_second": 1234.0}))
    (root / "metrics/dcgan.json").write_text(  # a stale metrics file's timings are never shown
        json.dumps(metrics_for("dcgan", 40.0) | {"images_per_second": 999.0, "train_seconds": 9.0})
    )
    params = {"models": MODELS}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture
def report(tmp_path, monkeypatch):
    """The fake tree with the report stage run on it."""
    write_fake_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    import stages.report

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "report",
            "--metrics",
            "metrics",
            "--samples",
            "reports/samples",
            "--logs",
            "logs",
            "--out",
            "reports/index.html",
            "--summary",
            "reports/summary.md",
        ],
    )
    stages.report.main()
    return tmp_path


def test_the_page_is_self_contained(report):
    page = (report / "reports/index.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    assert "<link" not in page and "<script" not in page and "url(" not in page
    assert "http://" not in page and "https://" not in page


def test_rows_notes_and_summary(report):
    page = (report / "reports/index.html").read_text()
    table = page[page.index('<table id="results">') : page.index("</table>")]
    names = re.findall(r"<tr[^>]*><td>([^<]+)</td>", table)
    assert names == ["real", *MODELS]  # real first, then params.yaml order
    assert "80.00" in table and "40.00" in table and "–" in table
    assert "vae: no metrics" in page and "no sample images" in page
    assert "no training logs under logs/dcgan" in page
    summary = (report / "reports/summary.md").read_text()
    lines = [line for line in summary.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["**real**", *MODELS]
    header = [cell.strip() for cell in lines[0].split("|")]
    speed, seconds = header.index("Images/s ↑"), header.index("Train s")
    row = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")] for line in lines[1:]}
    assert (row["gan"][speed], row["gan"][seconds]) == ("1234", "161")  # read from logs/gan
    assert (row["dcgan"][speed], row["dcgan"][seconds]) == ("–", "–")  # no logs: none shown
    assert (row["**real**"][speed], row["**real**"][seconds]) == ("–", "–")
    assert "test accuracy 0.9300" in summary and "vae: no metrics" in summary


def test_the_page_renders_in_headless_chromium(report, tmp_path):
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is absent (`make test` installs the chromium package)")
    page = (report / "reports/index.html").read_text()
    probe = (  # runs after every image has loaded; its verdict lands in the dumped DOM
        "<script>window.addEventListener('load', () => {"
        "const all = [...document.images];"
        "const drawn = all.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);"
        "document.body.dataset.images = all.length; document.body.dataset.drawn = drawn.length;"
        "document.body.dataset.rows = document.querySelectorAll('#results tbody tr').length;"
        "});</script>"
    )
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", probe + "</body>"))
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            checked.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    dom = result.stdout
    found = dict(re.findall(r'data-(images|drawn|rows)="(\d+)"', dom))
    assert found, f"chromium gave no verdict:\n{result.stderr[-2000:]}"
    # 3 grids (gan grid + interpolation, dcgan grid), 1 loss chart, 1 class histogram.
    assert int(found["images"]) == 5 and found["drawn"] == found["images"]
    assert int(found["rows"]) == 1 + len(MODELS)


def test_loss_curves_are_read_from_dvclive_tsvs(report):
    curves = read_curves(report / "logs/gan")
    assert curves == {
        "g_loss": ([0.0, 1.0, 2.0], [2.0, 1.5, 1.4]),
        "train/d_loss": ([0.0, 1.0, 2.0], [1.2, 0.9, 0.7]),
    }


def test_pull_request_markdown_holds_diffs_table_and_grid_links(report):
    links = grid_links(report / "reports/samples", MODELS, "https://example.org/blob/abc")
    assert links[0].endswith("/reports/samples/gan/grid.png)") and "vae: no grid" in links[2]
    summary = (report / "reports/summary.md").read_text()
    metrics_diff = "| Path | Metric |\n|---|---|\n| metrics/gan.json | fid |\n"
    params_diff = "| Path | Param | HEAD | workspace |\n|---|---|---|---|\n"  # DVC: no change
    markdown = pull_request_markdown("main", metrics_diff, params_diff, summary, links)
    assert "workspace vs `main`" in markdown and "| metrics/gan.json | fid |" in markdown
    assert "No param changed." in markdown and "| **real** |" in markdown


def test_pr_report_diffs_metrics_and_params_against_a_revision(report):
    def run(*command: str) -> subprocess.CompletedProcess:
        environment = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_STUDIO_OFFLINE="1")
        environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
        result = subprocess.run(
            command, cwd=report, env=environment, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    (report / "dvc.yaml").write_text("metrics: [metrics/gan.json]\nparams: [params.yaml]\n")
    run("git", "init", "-q")
    (report / ".dvc").mkdir()  # what `dvc init` makes that these commands need, without its cost
    (report / ".dvc/config").write_text("[core]\n    analytics = false\n")
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "base")
    gan = json.loads((report / "metrics/gan.json").read_text())
    (report / "metrics/gan.json").write_text(json.dumps({**gan, "fid": 70.0}))
    (report / "params.yaml").write_text(yaml.safe_dump({"models": MODELS, "seed": 1}))

    result = run(sys.executable, "-m", "stages.pr_report", "--rev", "HEAD", "--out", "comment.md")
    comment = (report / "comment.md").read_text()
    assert comment == result.stdout
    assert re.search(r"\| metrics/gan.json\s*\| fid\s*\| 80\.0\s*\| 70\.0", comment), comment
    assert re.search(r"\| params.yaml\s*\| seed\s*\| -\s*\| 1", comment), comment
    assert "| **real** |" in comment and "[gan](reports/samples/gan/grid.png)" in comment

"""The report stage on a tiny fake tree: the HTML is self-contained and renders in headless
Chromium (table rows and inlined grids with real pixels), the markdown summary has the same
rows, missing files get visible notes, the verdict column follows its rule, each sample grid
stands beside its real-image grid, and the PR markdown is assembled from DVC's diffs.
"""

from __future__ import annotations

import base64
import html
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
from aigc.report import (
    COLUMNS,
    REAL_GRID_CAPTION,
    RULE,
    Row,
    build_html,
    grid_links,
    load_rows,
    markdown_summary,
    pull_request_markdown,
    read_curves,
    verdict,
)
from aigc.report import cells as report_cells

CHROMIUM = "/usr/bin/chromium"
MODELS = ["gan", "dcgan", "vae"]  # vae has no files at all: its row must say so


def metrics_for(name: str, fid: float) -> dict:
    shares = [0.3, 0.3, 0.4] if name != "real" else [1 / 3] * 3
    values = {
        "name": name,
        "fid": fid,
        "fid_se": fid / 100,
        "kid_mean": fid / 1000,
        "kid_std": 0.001,
        "kid_se": 0.0002,
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
        "real_n": 48,
        "fid_at_real_n": fid * 1.1,
        "fid_se_at_real_n": fid / 90,
        "precision_at_real_n": 0.79,
        "recall_at_real_n": 0.68,
        "density_at_real_n": 0.91,
        "coverage_at_real_n": 0.83,
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
    save_grid(
        root / "reports/real_grids/gan.png", random_images(16, size=16, seed=4)
    )  # dcgan: none
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
    write_fake_text_tree(root)
    params = {"models": MODELS, "text_models": TEXT_MODELS}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


TEXT_MODELS = ["gpt", "textvae"]
HOSTILE = '<script>document.body.dataset.pwned = 1</script> & "quoted" \u202etext'


def write_fake_text_tree(root) -> None:
    """Text metrics for the real floor, gpt and textvae, and their samples.json: a sample and
    a corpus line hold a script tag, which the page must show as text."""
    text = root / "metrics/text"
    text.mkdir(parents=True)
    base = {"frechet_distance": 1.2, "frechet_distance_se": 0.4, "precision": 0.88,
            "recall": 0.85, "coverage": 0.97, "classes_covered": 10, "class_kl": 0.006,
            "copy_span_share": 0.03, "unigram_bits_per_character": 4.47}  # fmt: skip
    (text / "real.json").write_text(json.dumps(base))
    gpt = base | {"bits_per_character": 2.15, "bound": "exact", "recall": 0.5}
    (text / "gpt.json").write_text(json.dumps(gpt))
    (text / "textvae.json").write_text(
        json.dumps(base | {"bits_per_character": 2.5, "bound": "elbo"})
    )
    (root / "metrics/text_data.json").write_text(json.dumps({"collected": 9, "kept": 7,
                                                             "rejected": 2}))  # fmt: skip
    samples = root / "reports/text/samples"
    (samples / "gpt").mkdir(parents=True)
    shown = {"people": [HOSTILE, "plain text"], "work": ["a <b>bold</b> claim"]}
    (samples / "gpt/samples.json").write_text(json.dumps({"samples": shown}))
    (samples / "textvae").mkdir(parents=True)
    (samples / "textvae/samples.json").write_text(json.dumps({
        "samples": {"": ["prior sample"]},
        "reconstructions": [{"text": HOSTILE, "reconstruction": "rebuilt"}],
        "homotopy": {"from": "first text", "to": "last text", "texts": ["a", "b", "c"]},
    }))  # fmt: skip
    (root / "logs/text/gpt").mkdir(parents=True)
    (root / "logs/text/gpt/metrics.json").write_text(json.dumps({"train_seconds": 230.0}))
    (root / "logs/text/gpt/sampling.json").write_text(json.dumps({"characters_per_second": 900.0}))


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
            "--real-grids",
            "reports/real_grids",
            "--logs",
            "logs",
            "--text-metrics",
            "metrics/text",
            "--text-samples",
            "reports/text/samples",
            "--text-logs",
            "logs/text",
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


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every markdown table in `text`, as rows of {header: cell}."""
    tables, lines = [], text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("| Model |") and lines[index + 1].startswith("|---"):
            headers = [cell.strip() for cell in line.strip("|").split("|")]
            rows = []
            for row in lines[index + 2 :]:
                if not row.startswith("| "):
                    break
                cells = [cell.strip() for cell in row.strip("|").split("|")]
                rows.append(dict(zip(headers, cells, strict=True)))
            tables.append(rows)
    return tables


def html_tables(page: str) -> dict[str, list[dict[str, str]]]:
    """Every <table id=...> of the page, as rows of {header: cell}, cells still escaped."""
    tables = {}
    for table_id, table in re.findall(r'<table id="([^"]+)">(.*?)</table>', page, re.S):
        headers = re.findall(r"<th>(.*?)</th>", table)
        rows = re.findall(r"<tr[^>]*>(<td>.*?)</tr>", table, re.S)
        cells = [re.findall(r"<td>(.*?)</td>", row) for row in rows]
        tables[table_id] = [dict(zip(headers, row, strict=True)) for row in cells]
    return tables


def test_rows_notes_and_summary(report):
    page = (report / "reports/index.html").read_text()
    for table in html_tables(page).values():  # results, like for like, membership
        assert [row["Model"] for row in table] == ["real", *MODELS]  # real first, params order
    results = html_tables(page)["results"]
    assert results[1]["FID ↓"] == "80.00 ± 0.80" and results[2]["FID ↓"] == "40.00 ± 0.40"
    assert results[3]["FID ↓"] == "–"  # vae: no metrics file
    like_for_like = html_tables(page)["like-for-like"]
    assert like_for_like[1]["FID ↓"] == "88.00 ± 0.89" and like_for_like[0]["N"] == "48"
    assert "vae: no metrics" in page and "no sample images" in page
    assert "no training logs under logs/dcgan" in page
    summary = (report / "reports/summary.md").read_text()
    tables = markdown_tables(summary)
    assert len(tables) == 3  # results, like for like, membership inference
    for table in tables:
        assert [row["Model"] for row in table] == ["**real**", *MODELS]
    main = tables[0]
    rows = {row["Model"]: row for row in main}
    assert (rows["gan"]["Images/s ↑"], rows["gan"]["Train s"]) == ("1234", "161")  # logs/gan
    assert (rows["dcgan"]["Images/s ↑"], rows["dcgan"]["Train s"]) == ("–", "–")  # no logs
    assert (rows["**real**"]["Images/s ↑"], rows["**real**"]["Train s"]) == ("–", "–")
    assert "test accuracy 0.9300" in summary and "vae: no metrics" in summary


# One distinct value per key, and what each must look like in its column.
DISTINCT = {
    "fid": 11.111,
    "fid_se": 0.371,
    "kid_mean": 0.0222,
    "kid_se": 0.00333,
    "inception_score_mean": 4.444,
    "precision": 0.5557,
    "recall": 0.6668,
    "density": 0.7779,
    "coverage": 0.8881,
    "classes_covered": 9,
    "class_kl": 0.1212,
    "copy_rate": 0.1313,
    "reconstruction_ssim": 0.1414,
    "reconstruction_psnr": 15.15,
    "samples": 1818,
    "real_n": 1919,
    "fid_at_real_n": 20.202,
    "fid_se_at_real_n": 0.212,
    "precision_at_real_n": 0.2222,
    "recall_at_real_n": 0.2323,
    "density_at_real_n": 0.2424,
    "coverage_at_real_n": 0.2527,
}
EXPECTED_RESULTS = {
    "FID ↓": "11.11 ± 0.37",
    "KID ↓": "0.0222 ± 0.00333",
    "IS ↑": "4.44",
    "Precision ↑": "0.556",
    "Recall ↑": "0.667",
    "Density": "0.778",
    "Coverage ↑": "0.888",
    "Classes": "9",
    "Class KL ↓": "0.121",
    "Copy rate ↓": "0.131",
    "SSIM ↑": "0.141",
    "PSNR ↑": "15.2",
    "Images/s ↑": "1616",
    "Train s": "1717",
    "N": "1818",
}
EXPECTED_LIKE_FOR_LIKE = {
    "FID ↓": "20.20 ± 0.21",
    "Precision ↑": "0.222",
    "Recall ↑": "0.232",
    "Density": "0.242",
    "Coverage ↑": "0.253",
    "N": "1919",
}


def test_each_value_lands_in_its_column_and_text_stays_escaped(tmp_path):
    name = "odd<i>&name"  # a model name that HTML would otherwise read as markup
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps(DISTINCT))
    (tmp_path / "metrics/real.json").write_text(json.dumps({"samples": 6000, "real_n": 6000}))
    logs = tmp_path / "logs" / name  # timings come from the logs, not from the metrics
    logs.mkdir(parents=True)
    (logs / "metrics.json").write_text(json.dumps({"train_seconds": 1717.2}))
    (logs / "sampling.json").write_text(json.dumps({"images_per_second": 1616.4}))
    rows = load_rows(tmp_path / "metrics", [name], tmp_path / "logs")
    results, like_for_like = markdown_tables(markdown_summary(rows, None))
    # recall 0.23 < 0.30, class KL 0.12 > 0.05; the real row has no recall or coverage to share
    assert results[1].pop("Verdict") == "🟡 fair · recall 0.23 · coverage 0.25"
    assert results[1] == {"Model": name, **EXPECTED_RESULTS}
    assert like_for_like[1] == {"Model": name, **EXPECTED_LIKE_FOR_LIKE}
    assert results[0]["FID ↓"] == "–" and like_for_like[0]["N"] == "6000"
    assert "N = 6000 images" in markdown_summary(rows, None)

    page = build_html(rows, None, None, tmp_path / "samples", tmp_path / "logs")
    tables = html_tables(page)
    escaped = "odd&lt;i&gt;&amp;name"
    assert ">fair</span><br><small>recall 0.23<br>coverage 0.25<" in tables["results"][1].pop(
        "Verdict"
    )
    assert tables["results"][1] == {"Model": escaped, **EXPECTED_RESULTS}
    assert tables["like-for-like"][1] == {"Model": escaped, **EXPECTED_LIKE_FOR_LIKE}
    assert name not in page and "<i>" not in page


def test_a_missing_standard_error_leaves_the_bare_value():
    row = Row("old", {"fid": 3.0, "kid_mean": 0.5, "kid_se": None, "fid_se": float("nan")})
    cells = dict(zip((column.header for column in COLUMNS), report_cells(row), strict=True))
    assert cells["FID ↓"] == "3.00" and cells["KID ↓"] == "0.5"


# The verdict rule on hand-made metrics: a real floor and a model that passes every test.
FLOOR = {"recall_at_real_n": 0.80, "coverage_at_real_n": 0.90, "copy_rate": 0.010}
GOOD = {
    "recall_at_real_n": 0.54,
    "coverage_at_real_n": 0.36,
    "classes_covered": 10,
    "num_classes": 10,
    "class_kl": 0.02,
    "copy_rate": 0.0,
}


@pytest.mark.parametrize(
    ("changes", "colour", "reasons"),
    [
        ({}, "green", ()),
        # boundaries: each green threshold is inclusive
        ({"recall_at_real_n": 0.30, "class_kl": 0.05}, "green", ()),
        ({"copy_rate": 0.010 + RULE.copy_tolerance}, "green", ()),
        ({"copy_rate": 0.016}, "amber", ("copy rate 0.016 > real 0.010 + 0.005",)),
        ({"recall_at_real_n": 0.29}, "amber", ("recall 0.290 < 0.30",)),
        ({"classes_covered": 9}, "amber", ("9 of 10 classes covered",)),
        ({"class_kl": 0.06}, "amber", ("class KL 0.060 > 0.05",)),
        # each red threshold is exclusive: at it, amber (for every reason it is not green)
        (
            {"recall_at_real_n": 0.10, "classes_covered": 8, "class_kl": 0.20},
            "amber",
            ("recall 0.100 < 0.30", "8 of 10 classes covered", "class KL 0.200 > 0.05"),
        ),
        # a red row names only what made it red
        ({"recall_at_real_n": 0.099}, "red", ("recall 0.099 < 0.10",)),
        ({"classes_covered": 7}, "red", ("7 of 10 classes covered (< 8)",)),
        ({"class_kl": 0.21}, "red", ("class KL 0.210 > 0.20",)),
        # an unlabelled source: no class metrics, judged on the rest
        ({"classes_covered": None, "num_classes": None, "class_kl": None}, "green", ()),
    ],
)
def test_the_verdict_follows_its_thresholds(changes, colour, reasons):
    found = verdict(GOOD | changes, FLOOR)
    assert (found.colour, found.reasons) == (colour, reasons)
    assert found.label == {"green": "good", "amber": "fair", "red": "poor"}[colour]


def test_the_verdict_shares_of_the_real_floor_and_what_it_cannot_judge():
    found = verdict(GOOD, FLOOR)
    assert found.shares == ("recall 0.54 = 68 % of real", "coverage 0.36 = 40 % of real")
    headline = {k.removesuffix("_at_real_n"): v for k, v in GOOD.items()}  # an older file
    assert verdict(headline | {"recall": 0.8}, FLOOR).shares[0] == "recall 0.80 = 100 % of real"
    without_floor = verdict(GOOD, None)  # no copy rate to compare with: not green
    assert without_floor.colour == "amber"
    assert without_floor.shares == ("recall 0.54", "coverage 0.36")
    assert verdict(None, FLOOR) is None and verdict({"fid": 3.0}, FLOOR) is None


def test_the_verdict_column_and_the_grids_beside_real_images(report):
    summary = (report / "reports/summary.md").read_text()
    rows = {row["Model"]: row["Verdict"] for row in markdown_tables(summary)[0]}
    assert rows == {
        "**real**": "floor",
        "gan": "🟢 good · recall 0.68 = 100 % of real · coverage 0.83 = 100 % of real",
        "dcgan": "🟢 good · recall 0.68 = 100 % of real · coverage 0.83 = 100 % of real",
        "vae": "–",  # no metrics
    }
    assert "recall ≥ 0.30" in summary  # the rule is stated beside the table
    page = (report / "reports/index.html").read_text()
    gan = html_tables(page)["results"][1]["Verdict"]
    assert '<span class="light green" aria-hidden="true">●</span> good' in gan
    assert "recall ≥" in page

    def uri(path: str) -> str:
        return base64.b64encode((report / path).read_bytes()).decode("ascii")

    pairs = re.findall(r'<div class="pair">(.*?)</div>', page, re.S)
    assert len(pairs) == 2  # gan and dcgan have a sample grid
    gan_pair, dcgan_pair = pairs
    figures = re.findall(r'<img src="data:image/png;base64,([^"]+)".*?<figcaption>(.*?)<', gan_pair)
    assert figures == [
        (uri("reports/samples/gan/grid.png"), "samples"),
        (uri("reports/real_grids/gan.png"), REAL_GRID_CAPTION),
    ]
    assert "no grid of real images: reports/real_grids/dcgan.png is missing" in dcgan_pair


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
        "document.body.dataset.escaped = [...document.querySelectorAll('pre.text')]"
        ".filter(p => p.textContent.includes('<script>')).length;"
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
    found = dict(re.findall(r'data-(images|drawn|rows|escaped|pwned)="(\d+)"', dom))
    assert found, f"chromium gave no verdict:\n{result.stderr[-2000:]}"
    # 4 grids (gan grid, its real grid, interpolation; dcgan grid), 1 loss chart, 1 histogram.
    assert int(found["images"]) == 6 and found["drawn"] == found["images"]
    assert int(found["rows"]) == 1 + len(MODELS)
    # the script tags of a sample and a corpus text are shown as text and never run
    assert found["escaped"] == "2" and "pwned" not in found


def test_the_text_section_shows_the_table_samples_and_homotopy_escaped(report):
    page = (report / "reports/index.html").read_text()
    section = page[page.index('<h2 id="text">') :]
    assert "<script>document" not in section
    assert html.escape(HOSTILE, quote=True) in section
    assert "a &lt;b&gt;bold&lt;/b&gt; claim" in section and "<b>bold</b>" not in section
    assert "≤ 2.500" in section and "2.150" in section  # the VAE's bound is marked as one
    assert "asked for class people" in section and "Homotopy" in section
    assert "4.47 bits/char" in section and "900" in section and "230" in section
    summary = (report / "reports/summary.md").read_text()
    assert "## Text" in summary and "| gpt | 2.150 |" in summary and "<script>" not in summary


def test_loss_curves_are_read_from_dvclive_tsvs(report):
    curves = read_curves(report / "logs/gan")
    assert curves == {
        "g_loss": ([0.0, 1.0, 2.0], [2.0, 1.5, 1.4]),
        "train/d_loss": ([0.0, 1.0, 2.0], [1.2, 0.9, 0.7]),
    }


def test_pull_request_markdown_holds_diffs_table_and_grid_links(report):
    links = grid_links(report / "reports/samples", MODELS, "https://example.org/blob/abc")
    assert links[0].endswith("/reports/samples/gan/grid.png)") and "vae: no grid" in links[2]
    beside = grid_links(Path("reports/samples"), MODELS, None, Path("reports/real_grids"))
    assert beside[0] == (
        "- [gan](reports/samples/gan/grid.png) · "
        "[real images of the classes the evaluator sees in it](reports/real_grids/gan.png)"
    )
    assert beside[1] == "- [dcgan](reports/samples/dcgan/grid.png)"  # no real grid: none linked
    summary = (report / "reports/summary.md").read_text()
    metrics_diff = "| Path | Metric |\n|---|---|\n| metrics/gan.json | fid |\n"
    params_diff = "| Path | Param | HEAD | workspace |\n|---|---|---|---|\n"  # DVC: no change
    headline = "| gan | `main` | workspace | change | beyond 2 SE |"
    markdown = pull_request_markdown("main", headline, metrics_diff, params_diff, summary, links)
    assert "workspace vs `main`" in markdown and "| metrics/gan.json | fid |" in markdown
    assert "No param changed." in markdown and "| **real** |" in markdown
    assert markdown.index(headline) < markdown.index("## Params")  # the headline leads
    folded = markdown[markdown.index("<details>") : markdown.index("</details>")]
    assert "DVC's complete diff (1 rows)" in folded and "| metrics/gan.json | fid |" in folded


def test_the_headline_judges_a_change_against_its_own_standard_error():
    from aigc.review import headline_markdown

    def pair(old, new):
        return {"old": old, "new": new, "diff": None if old is None else new - old}

    diff = {
        "metrics/dcgan.json": {
            "fid": pair(30.0, 20.0),
            "fid_se": pair(0.3, 0.3),  # 10 >> 2 x 0.42: better
            "recall": pair(0.50, 0.51),
            "reference_samples": pair(10000, 10000),  # se 0.007
            "precision": pair(0.60, 0.50),
            "manifold_samples": pair(10000, 10000),  # worse
            "class_kl": pair(0.02, 0.03),  # no error estimate: no verdict
            "class_share_00_a": pair(0.1, 0.2),  # not a headline metric
        },
        "metrics/vae.json": {"fid": pair(50.0, 50.0), "fid_se": pair(0.5, 0.5)},
        "metrics/gan.json": {"fid": pair(None, 60.0), "fid_se": pair(None, 0.5)},
    }
    markdown = headline_markdown(diff, ["real", "dcgan", "vae", "gan"], "main")
    dcgan = markdown[markdown.index("| dcgan |") : markdown.index("- vae:")]
    lines = {line.split(" | ")[0]: line for line in dcgan.splitlines()}
    assert lines["| FID ↓"] == "| FID ↓ | 30.00 ± 0.30 | 20.00 ± 0.30 | -10.00 | **better** |"
    assert lines["| Recall ↑"].endswith("| +0.010 | within noise |")
    assert lines["| Precision ↑"].endswith("| -0.100 | **worse** |")
    assert lines["| Class KL ↓"].endswith("| +0.010 |  |")
    assert "class_share" not in markdown and "real" not in markdown
    assert "- vae: no headline metric changed." in markdown
    assert "| gan | `main` |" in markdown and "| – | 60.00 ± 0.50 | – | new |" in markdown


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
    assert re.search(r"\| FID ↓ \| 80\.00 (± \S+ )?\| 70\.00", comment), comment
    assert re.search(r"\| params.yaml\s*\| seed\s*\| -\s*\| 1", comment), comment
    assert "| **real** |" in comment and "[gan](reports/samples/gan/grid.png)" in comment


def test_the_privacy_section_shows_each_sweep_point_beside_its_epsilon_and_a_failed_one():
    from aigc.experiments import ExperimentRow
    from aigc.privacy_report import privacy_html, privacy_markdown, privacy_rows

    profile = {"train.vae.steps": 600}

    def experiment(name, target, fid, steps=600, error=None):
        metrics = {"metrics/vae.json:fid": fid, "metrics/vae.json:privacy_epsilon": target or None}
        params = {"train.vae.privacy.epsilon": target, "train.vae.steps": steps}
        return ExperimentRow(name, "abc", params, metrics, error)

    experiments = [
        experiment("newest-inf", 0, 50.0),
        experiment("<b>eps3</b>", 3, 90.0),
        experiment("older-inf", 0, 55.0),  # an older run of the same point: left out
        experiment("default", 0, 20.0, steps=6000),  # not a sweep point
        experiment("broken", 1, None, error="loss kl is nan at step 3"),
    ]
    rows = privacy_rows("vae", experiments, profile)
    assert [row["epsilon_target"] for row in rows] == [1, 3, "∞"]  # ∞ last
    assert [row["experiment"] for row in rows] == ["broken", "<b>eps3</b>", "newest-inf"]
    markdown = privacy_markdown(rows)
    assert "| vae | ∞ | 0.00 |" not in markdown and "| vae | ∞ | – |" in markdown
    assert "loss kl is nan at step 3" in markdown
    page = privacy_html(rows, [])
    assert "&lt;b&gt;eps3&lt;/b&gt;" in page and "<b>eps3</b>" not in page
    table = html_tables(page)["privacy-utility"]
    assert [(r["target ε"], r["FID ↓"]) for r in table] == [
        ("1", "–"),
        ("3", "90.00"),
        ("∞", "50.00"),
    ]

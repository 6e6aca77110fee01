"""The data sweep's rows, tables and page (aigc/sweep_report.py): which grid each point belongs
to, the newest run of a point, failures kept, every text escaped, curves inlined."""

from __future__ import annotations

import re

from aigc.experiments import ExperimentRow
from aigc.sweep_report import (
    experiments_html,
    experiments_markdown,
    grid_rows,
    section_markdown,
    sweep_rows,
    training_data_line,
)

PROFILE = {"train.vae.steps": 1500, "sample.num_samples": 2000}


def point(name, fraction=1.0, flip=0.0, broken=0.0, duplicates=0.0, clean=True, copies=1,
          fid=50.0, steps=1500, error=None, diff_augment=(), seed=0):  # fmt: skip
    params = {"split.train_fraction": fraction, "degrade.label_flip": flip,
              "degrade.broken": broken, "degrade.duplicates": duplicates, "degrade.clean": clean,
              "augment.copies": copies, "train.dcgan.diff_augment": list(diff_augment),
              "train.common.seed": seed,
              "train.vae.steps": steps, "sample.num_samples": 2000}  # fmt: skip
    images = int(54000 * fraction)
    metrics = {} if error else {
        "metrics/vae.json:fid": fid, "metrics/vae.json:recall": 0.2,
        "metrics/vae.json:coverage": 0.1, "metrics/training_data.json:images": images,
    }  # fmt: skip
    return ExperimentRow(name, name + "-rev", params, metrics, error)


def rows_of(experiments):
    base = {"augment.copies": 1, "train.common.seed": 0}
    return sweep_rows(experiments, ["vae"], PROFILE, base, gans=["dcgan"])


def test_each_point_lands_in_its_grids_and_the_newest_run_of_a_point_wins():
    experiments = [
        point("full-new", fid=40.0),
        point("full-old", fid=45.0),  # the same point, older: left out
        point("tenth", fraction=0.1),
        point("dirty-on", flip=0.2, broken=0.2, duplicates=0.2),
        point("dirty-off", flip=0.2, broken=0.2, duplicates=0.2, clean=False),
        point("copies-3", copies=3),
        point("diffaug", copies=0, diff_augment=["translation"]),
        point("mixed", fraction=0.1, broken=0.2),  # two knobs at once: in no curve
        point("seed-1", seed=1),
        point("seed-1-tenth", seed=1, fraction=0.1),  # another seed off the reference: nowhere
        point("default-run", steps=6000),  # not a point of this sweep
        point("<b>bad</b>", fraction=0.5, error="failed: params.yaml: split.train_fraction"),
    ]
    rows = rows_of(experiments)
    names = {grid: [row["experiment"] for row in grid_rows(rows, grid)]
             for grid in ("quantity", "quality", "augmentation", "seeds")}  # fmt: skip
    assert names["quantity"] == ["tenth", "<b>bad</b>", "full-new"]
    assert names["quality"] == ["full-new", "dirty-on", "dirty-off"]
    assert names["augmentation"] == ["diffaug", "full-new", "copies-3"]
    assert names["seeds"] == ["full-new", "seed-1"]
    assert "full-old" not in str(rows) and "default-run" not in str(rows)
    for name in ("mixed", "seed-1-tenth"):
        assert next(row for row in rows if row["experiment"] == name)["grids"] == []
    bad = next(row for row in rows if row["experiment"] == "<b>bad</b>")
    assert bad["families"]["vae"]["fid"] is None and bad["error"].startswith("failed")


def test_a_grid_with_only_the_reference_point_is_not_drawn():
    rows = rows_of([point("full"), point("tenth", fraction=0.1)])
    assert grid_rows(rows, "quality") == [] and grid_rows(rows, "augmentation") == []
    markdown = experiments_markdown(rows)
    assert "## Data quantity" in markdown and "## Data quality" not in markdown
    assert re.search(r"\| 0\.1 \| 5400 \| 50\.0 \| 0\.200 \| 0\.100 \| – \| tenth \|", markdown)


def test_the_page_is_self_contained_and_escapes_every_text():
    rows = rows_of([
        point("full"), point("tenth", fraction=0.1),
        point("dirty", broken=0.2), point("dirty-off", broken=0.2, clean=False),
        point("<script>x</script>", fraction=0.5, error="failed: <img src=x>"),
    ])  # fmt: skip
    page = experiments_html(rows)
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<img src=x>" not in page and "&lt;img src=x&gt;" in page
    assert 'id="quantity-curves" src="data:image/png;base64,' in page
    assert 'id="quality-curves" src="data:image/png;base64,' in page
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched


def test_the_training_data_line_says_what_was_injected_and_caught():
    assert training_data_line(None).startswith("metrics/training_data.json is missing")
    clean = {"images": 54000, "train_fraction": 1.0, "split_images": 54000, "injected": {}}
    assert training_data_line(clean).endswith("of 54000, uncorrupted.")
    dirty = clean | {"images": 50000, "injected": {"blank": 100, "label_flip": 0},
                     "cleaner": True, "caught_share": 0.5}  # fmt: skip
    assert training_data_line(dirty).endswith("(100 blank); cleaner on, 50% of it caught.")
    assert section_markdown([], dirty).startswith("### Training data and data experiments")

"""Sweeps (aigc/experiments.py): the grid syntax handed to `dvc exp run -S`, and the rows read
back from `dvc exp show --json` (its format: dvc/repo/experiments/serialize.py), failures
included."""

from __future__ import annotations

from aigc.experiments import collect, failure_reason, flatten, set_params


def test_a_list_value_becomes_dvcs_comma_grid_and_a_scalar_a_plain_override():
    arguments = set_params({"train.vae.privacy.epsilon": [0, 1, 3], "sample.num_samples": 2000})
    assert arguments == ["-S", "train.vae.privacy.epsilon=0,1,3", "-S", "sample.num_samples=2000"]


def test_flatten_gives_dotted_keys():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


def experiment(name, epsilon, fid=None, state="success", error=None):
    data = {
        "rev": name + "-rev",
        "params": {"params.yaml": {"data": {"train": {"vae": {"privacy": {"epsilon": epsilon}}}}}},
        "metrics": {"metrics/vae.json": {"data": {"fid": fid}}} if fid is not None else {},
    }
    return {"revs": [{"rev": name + "-rev", "name": name, "data": data, "error": error}],
            "executor": {"state": state}, "name": name}  # fmt: skip


def test_collect_reads_every_experiment_of_every_commit_and_keeps_failures_as_rows():
    shown = [
        {"rev": "workspace", "name": None, "data": {}, "experiments": None},
        {"rev": "abc", "name": "main", "data": {}, "experiments": [
            experiment("plain", 0, fid=40.0),
            experiment("noisy", 3, error={"msg": "loss kl is nan", "type": "TrainingError"}),
            experiment("gone", 10, fid=99.0, state="failed"),  # its baseline's metrics
            experiment("later", 10, fid=99.0, state="queued"),
        ]},
    ]  # fmt: skip
    rows = collect(shown, ["train.vae.privacy.epsilon"], ["metrics/vae.json:fid"])
    assert [row.name for row in rows] == ["plain", "noisy", "gone", "later"]
    assert rows[0].params == {"train.vae.privacy.epsilon": 0}
    assert rows[0].metrics == {"metrics/vae.json:fid": 40.0} and rows[0].error is None
    assert (
        rows[1].error == "failed: loss kl is nan"
        and rows[1].metrics["metrics/vae.json:fid"] is None
    )
    assert "failed" in rows[2].error and rows[2].metrics["metrics/vae.json:fid"] is None
    assert (
        rows[3].error == "not finished: queued" and rows[3].metrics["metrics/vae.json:fid"] is None
    )


def test_a_failed_runs_reason_is_its_stages_own_error_line():
    log = """Running stage 'degrade':
> python -m stages.degrade --train data/split/train
error: params.yaml: split.train_fraction = 1.5 is out of range; allowed: a number <= 1.0
ERROR: failed to reproduce 'degrade': failed to run: python -m stages.degrade, exited with 2
"""
    reason = "params.yaml: split.train_fraction = 1.5 is out of range; allowed: a number <= 1.0"
    assert failure_reason(log) == reason
    crash = "Running stage 'train@vae':\nTraceback ...\nERROR: failed to reproduce 'train@vae'\n"
    assert failure_reason(crash) == "failed to reproduce 'train@vae'"
    assert failure_reason("Running stage 'x':\n") is None


def test_compare_shows_the_params_and_headline_metrics_that_differ_and_nothing_else():
    from aigc.experiments import ExperimentRow
    from stages.compare import aligned, table

    def metrics(vae_fid, share, seconds):
        return {
            "metrics/vae.json:fid": vae_fid,
            "metrics/vae.json:class_share_00_a": share,
            "metrics/gan.json:fid": 70.0,
            "logs/vae/metrics.json:train_seconds": seconds,
        }

    rows = [
        ExperimentRow("main", "r0", {"seed": 0, "steps": 600}, metrics(50.0, 0.1, 3.0)),
        ExperimentRow("quick-fox", "r1", {"seed": 0, "steps": 900}, metrics(40.0, 0.2, 2.0)),
        ExperimentRow("bad-cat", "r2", {"seed": 0, "steps": -1}, {}, error="failed: steps < 0"),
    ]
    header, body = table(rows, ["fid", "recall"])
    assert header == ["experiment", "state", "steps", "vae fid"]  # gan's fid and seed: equal
    assert body == [["main", "success", "600", "50"], ["quick-fox", "success", "900", "40"],
                    ["bad-cat", "failed: steps < 0", "-1", "–"]]  # fmt: skip
    text = aligned(header, body).splitlines()
    assert len(text) == 5 and text[0].split("  ")[0] == "experiment" and set(text[1]) == {"-", " "}
    assert text[4].startswith("bad-cat     failed: steps < 0  -1")

"""Sweeps through DVC's own experiment machinery: queue a grid, run the queue, collect a table.

    queue_grid(["evaluate@vae"], {"train.vae.privacy.epsilon": [0, 1, 3, 10]}, profile)
    run_queue(jobs=1)
    rows = collect(dvc_exp_show_json(), params=[...], metrics=[...])

- `queue_grid` runs `dvc exp run --queue TARGETS -S key=v1,v2,...` (DVC expands comma lists
  into the grid, one queued experiment per point, with Hydra's sweep syntax), the profile's
  fixed overrides as more `-S` values.
- `run_queue` starts `jobs` queue workers (`dvc queue start -j N`) and waits until no
  experiment is queued or running (`dvc queue status`).
- `collect` reads `dvc exp show --json` into one `ExperimentRow` per experiment: its name
  (what `dvc exp apply NAME` takes), the chosen params and metrics flattened to dotted keys,
  and the error of a failed (or unfinished) run, so that a failure is a row, not a missing
  point; such a row has no metrics (the files DVC shows for it are its baseline's).
  `explain_failures` replaces DVC's "Experiment run failed" by the failing stage's own error
  line from the run's queue log.

Every command runs `python -m dvc` of this interpreter, in the working directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ExperimentRow",
    "add_sweep_arguments",
    "collect",
    "dvc",
    "explain_failures",
    "queue_grid",
    "run_queue",
]

POLL_SECONDS = 10.0


class ExperimentError(RuntimeError):
    """A DVC command of the sweep failed; the message holds its last line of output."""


def dvc(*arguments: str) -> str:
    """Run `dvc ARGUMENTS` and return its stdout; ExperimentError on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *arguments], capture_output=True, text=True
    )
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
        raise ExperimentError(f"dvc {' '.join(arguments)}: {lines[-1]}")
    return result.stdout


def set_params(values: Mapping[str, Any]) -> list[str]:
    """`-S key=value` arguments; a list value becomes DVC's grid syntax `key=v1,v2`."""
    arguments = []
    for key, value in values.items():
        shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        arguments += ["-S", f"{key}={shown}"]
    return arguments


def queue_grid(
    targets: Sequence[str], grid: Mapping[str, Sequence[Any]], profile: Mapping[str, Any]
) -> str:
    """Queue one experiment per point of `grid` (every combination of its lists), each with
    the `profile` overrides; returns DVC's output (the queued experiments' names)."""
    return dvc("exp", "run", "--queue", *targets, *set_params(profile), *set_params(grid))


def add_sweep_arguments(parser, steps: int, samples: int) -> None:
    """The options every sweep stage takes: its budget per point and how it runs the queue."""
    parser.add_argument("--steps", type=int, default=steps, help="training steps per point")
    parser.add_argument("--samples", type=int, default=samples, help="samples per point")
    parser.add_argument("--jobs", type=int, default=1, help="queue workers (dvc queue start -j)")
    parser.add_argument("--collect-only", action="store_true", help="skip queueing and running")


def run_queue(jobs: int = 1, poll: float = POLL_SECONDS, log=print) -> None:
    """Start `jobs` queue workers and wait until the queue holds nothing queued or running.

    A worker started while the previous one is still shutting down can exit at once and leave
    tasks queued with no worker ("0 active, 0 idle"); then the workers are started again."""
    dvc("queue", "start", "-j", str(jobs))
    while True:
        status = dvc("queue", "status")
        busy = [line for line in status.splitlines() if " Queued " in f" {line} "
                or " Running " in f" {line} "]  # fmt: skip
        if not busy:
            return
        if "0 active, 0 idle" in status:  # tasks left and no worker to run them
            dvc("queue", "start", "-j", str(jobs))
        log(f"{len(busy)} experiments queued or running")
        time.sleep(poll)


@dataclass
class ExperimentRow:
    """One experiment of `dvc exp show --json`."""

    name: str
    rev: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def failure_reason(log: str) -> str | None:
    """The line that says why a run failed, from its `dvc queue logs` output: the failing
    stage's own `error:` line (aigc/errors.py) when there is one, else DVC's last ERROR."""
    lines = [line.strip() for line in log.splitlines()]
    own = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    dvcs = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    return (own or dvcs or [None])[-1]


def explain_failures(rows: list[ExperimentRow]) -> list[ExperimentRow]:
    """`rows` with each failed run's error replaced by the reason in its queue log, when the
    queue still holds the log (`dvc queue logs NAME`)."""
    for row in rows:
        if row.error and row.error.startswith("failed"):
            try:
                reason = failure_reason(dvc("queue", "logs", row.name))
            except ExperimentError:
                continue  # a run from another machine or a cleared queue: keep DVC's words
            if reason:
                row.error = f"failed: {reason}"
    return rows


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    if not isinstance(values, Mapping):
        return {prefix: values}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def dvc_exp_show_json() -> list:
    """`dvc exp show --json` of every experiment on the current commit, parsed."""
    return json.loads(dvc("exp", "show", "--json") or "[]")


def collect(
    shown: list,
    params: Iterable[str] | None,
    metrics: Iterable[str] | None,
    baselines: bool = False,
) -> list[ExperimentRow]:
    """The experiments in parsed `dvc exp show --json` output, with the chosen params (dotted
    keys of params.yaml) and metrics ("FILE:dotted.key") of each; None chooses every one.
    With `baselines`, each commit's own row comes before its experiments."""
    params = None if params is None else list(params)
    metrics = None if metrics is None else list(metrics)
    rows = []
    for commit in shown:
        if baselines and commit.get("rev") != "workspace":
            rows.append(_row(commit, params, metrics, None))
        for experiment in commit.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state")
            for revision in experiment.get("revs") or []:
                rows.append(_row(revision, params, metrics, state))
    return rows


def _row(revision: Mapping, params, metrics, state) -> ExperimentRow:
    """One ExpState of `dvc exp show --json` (dvc/repo/experiments/serialize.py)."""
    data = revision.get("data") or {}
    name = revision.get("name") or revision.get("rev", "")[:7]
    row = ExperimentRow(name=name, rev=revision.get("rev", ""))
    error = revision.get("error")
    if error:
        message = error.get("msg", str(error)) if isinstance(error, Mapping) else str(error)
        row.error = f"failed: {message}"
    elif state == "failed":
        row.error = f"the experiment failed (dvc queue logs {name} shows why)"
    elif state in ("queued", "running"):
        row.error = f"not finished: {state}"
    param_values = flatten((data.get("params") or {}).get("params.yaml", {}).get("data", {}))
    row.params = {
        key: param_values.get(key) for key in (param_values if params is None else params)
    }
    files = {} if row.error else data.get("metrics") or {}  # a failed run's are its baseline's
    found = {
        f"{path}:{key}": value
        for path, content in files.items()
        for key, value in flatten((content or {}).get("data", {})).items()
    }
    row.metrics = found if metrics is None else {key: found.get(key) for key in metrics}
    return row

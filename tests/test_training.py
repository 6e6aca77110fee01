"""The training loop and the train stage: determinism, resume after SIGKILL/SIGTERM, NaN stops,
dvclive output, and params errors that name the key.

The resume tests run `python -m stages.train` in a subprocess and kill it once its first
periodic checkpoint exists; the re-run must say it resumes, and its final weights must EQUAL
those of a run that was never stopped (CPU, one thread each).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, random_images, write_params

from aigc.checkpoint import load_checkpoint
from aigc.imagesets import ImageSet, load_image_set, save_image_set
from aigc.training import TrainingError, read_train_params, resume_key, train

# dcgan at 16x16 with 100 steps: long enough (a few seconds) to be killed in the middle.
RESUMABLE = {
    "train": {
        "common": {"checkpoint_every": 5, "log_every": 10, "device": "cpu"},
        "dcgan": {"steps": 100, "batch_size": 16, "latent_dim": 8, "width": 8},
    }
}


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    images = random_images(128, channels=1, size=16)
    save_image_set(folder, ImageSet(images, np.arange(128) % 4, ["a", "b", "c", "d"]))
    return folder


def run_in_process(folder: Path, data: Path, family: str, overrides: dict) -> dict:
    """Read params as the stage does and call train(); returns the final checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    params = write_params(folder, overrides)
    image_set = load_image_set(data, mmap=False)
    common, loop, config, raw = read_train_params(params, family, image_set)
    train(
        family,
        config,
        loop,
        common,
        image_set,
        out=folder / "model.pt",
        live_dir=folder / "live",
        resume_dir=folder / ".resume" / resume_key(raw, image_set),
        meta={"classes": image_set.classes},
    )
    return load_checkpoint(folder / "model.pt")


def stage_command(data: Path, out: str = "model.pt") -> list[str]:
    return [sys.executable, "-m", "stages.train", "--model", "dcgan", "--data", str(data),
            "--out", out, "--live", "live"]  # fmt: skip


def start_stage(folder: Path, data: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        stage_command(data), cwd=folder, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def wait_for_checkpoint(folder: Path, process: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = list(folder.glob(".resume/*/last.pt"))
        if found:
            return found[0]
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


def assert_same_weights(first: dict, second: dict) -> None:
    for part in ("model", "ema"):
        if first[part] is None:
            assert second[part] is None
            continue
        assert first[part].keys() == second[part].keys()
        for name, tensor in first[part].items():
            assert torch.equal(tensor, second[part][name]), f"{part}.{name} differs"


def test_two_runs_of_one_config_give_identical_weights_and_samples(tmp_path, data):
    overrides = {
        "train": {"vae": {"steps": 6, "batch_size": 32, "ema_decay": 0.9, "prior_components": 2}}
    }
    first = run_in_process(tmp_path / "one", data, "vae", overrides)
    second = run_in_process(tmp_path / "two", data, "vae", overrides)
    assert_same_weights(first, second)
    assert first["ema"] is not None and first["step"] == 6
    samples = []
    for name in ("one", "two"):
        from aigc.checkpoint import load_model

        model, _ = load_model(tmp_path / name / "model.pt")
        samples.append(model.sample(8, rng=torch.Generator().manual_seed(3)))
    assert torch.equal(samples[0], samples[1])
    # The final checkpoint holds nothing that varies between identical runs (no timings), so
    # its bytes, and so DVC's hash of it, are the same: nothing downstream re-runs.
    model_bytes = [(tmp_path / name / "model.pt").read_bytes() for name in ("one", "two")]
    assert model_bytes[0] == model_bytes[1]


def test_a_vae_samples_from_the_mixture_fitted_to_its_training_codes(tmp_path, data):
    from aigc.checkpoint import load_model
    from aigc.models.layers import GaussianMixture

    overrides = {"train": {"vae": {"steps": 6, "batch_size": 32, "prior_components": 3}}}
    run_in_process(tmp_path / "run", data, "vae", overrides)
    model, _ = load_model(tmp_path / "run" / "model.pt")
    assert bool(model.prior.fitted)
    # The prior in the checkpoint is the mixture EM fits to one posterior draw of every
    # training image from the final encoder (in eval mode), its noise seeded 0.
    images = torch.from_numpy(np.array(load_image_set(data).array)).float() / 255
    with torch.no_grad():
        mu, logvar = model.encoder(images)
    noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(0))
    reference = GaussianMixture(3, model.latent_dim)
    log_likelihood = reference.fit(mu + torch.exp(0.5 * logvar) * noise)
    assert torch.allclose(model.prior.means, reference.means)
    assert torch.allclose(model.prior.scale_tril, reference.scale_tril)
    summary = json.loads((tmp_path / "run" / "live" / "metrics.json").read_text())
    assert summary["prior_log_likelihood"] == pytest.approx(log_likelihood)
    # Samples decode the mixture's draws, not N(0, I) noise.
    drawn = model.sample(8, rng=torch.Generator().manual_seed(3))
    mixture = model.prior.sample(8, torch.Generator().manual_seed(3))
    assert torch.equal(drawn, model.decode(mixture))
    noise = torch.randn(8, model.latent_dim, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(drawn, model.decode(noise))


def test_training_writes_dvclive_logs_and_removes_its_resume_folder(tmp_path, data):
    folder = tmp_path / "run"
    overrides = {"train": {"gan": {"epochs": 2, "batch_size": 32}, "common": {"log_every": 2}}}
    checkpoint = run_in_process(folder, data, "gan", overrides)
    assert checkpoint["step"] == 8 and checkpoint["family"] == "gan"
    meta = checkpoint["meta"]
    assert meta["classes"] == ["a", "b", "c", "d"] and meta["steps"] == 8
    # Timings differ run to run: they go to the logs, never into the cached checkpoint.
    assert "train_seconds" not in meta and "images_per_second" not in meta
    summary = json.loads((folder / "live" / "metrics.json").read_text())
    assert summary["train_seconds"] > 0 and summary["images_per_second"] > 0
    assert math.isfinite(summary["train"]["d_loss"])
    history = (folder / "live" / "plots" / "metrics" / "train" / "g_loss.tsv").read_text()
    assert [line.split("\t")[0] for line in history.splitlines()] == ["step", "2", "4", "6", "8"]
    grids = sorted(p.name for p in (folder / "live" / "plots" / "images" / "samples").iterdir())
    assert grids == ["epoch_001.png", "epoch_002.png"]
    assert not list((folder / ".resume").iterdir())


def test_a_nan_loss_stops_training_and_writes_no_model(tmp_path, data, monkeypatch):
    from aigc.models.vae import VAE

    real_step = VAE.train_step
    calls = []

    def step_that_diverges(self, images, labels):
        losses = real_step(self, images, labels)
        calls.append(1)
        return {**losses, "kl": float("nan")} if len(calls) == 3 else losses

    monkeypatch.setattr(VAE, "train_step", step_that_diverges)
    with pytest.raises(
        TrainingError, match=r"loss kl is nan at step 3 .*lower train\.vae\.learning_rate"
    ):
        run_in_process(tmp_path, data, "vae", {"train": {"vae": {"steps": 5, "batch_size": 16}}})
    assert not (tmp_path / "model.pt").exists()


def test_sigkill_then_rerun_resumes_and_equals_an_uninterrupted_run(tmp_path, data):
    killed = tmp_path / "killed"
    killed.mkdir()
    write_params(killed, RESUMABLE)
    process = start_stage(killed, data)
    first_checkpoint = wait_for_checkpoint(killed, process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.pt").exists()
    step = load_checkpoint(first_checkpoint)["step"]
    assert 0 < step < 100 and step % 5 == 0

    rerun = start_stage(killed, data)
    output = rerun.communicate()[0]
    assert rerun.returncode == 0, output
    assert f"resuming dcgan from step {step} (.resume/dcgan-" in output
    assert not list((killed / ".resume").iterdir())

    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1)
    try:
        reference = run_in_process(tmp_path / "reference", data, "dcgan", RESUMABLE)
    finally:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    assert_same_weights(load_checkpoint(killed / "model.pt"), reference)


def test_sigterm_saves_a_checkpoint_and_exits_non_zero(tmp_path, data):
    write_params(tmp_path, RESUMABLE)
    process = start_stage(tmp_path, data)
    wait_for_checkpoint(tmp_path, process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate()[0]
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM: stopped dcgan at step" in output
    stopped_at = int(output.split("stopped dcgan at step ")[1].split("/")[0])
    (checkpoint,) = tmp_path.glob(".resume/*/last.pt")
    assert load_checkpoint(checkpoint)["step"] == stopped_at
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train": {"dcgan": {"width": 0}}}, "train.dcgan.width = 0 is out of range"),
        ({"train": {"dcgan": {"widht": 8}}}, "train.dcgan.widht: unknown key; allowed keys:"),
        ({"train": {"dcgan": {"batch_size": 0}}}, "train.dcgan.batch_size = 0 is out of range"),
        ({"train": {"dcgan": {"batch_size": 4096}}}, "train.dcgan.batch_size = 4096 is larger"),
        ({"train": {"dcgan": {"loss": "wgan"}}}, "train.dcgan.loss = 'wgan' is not allowed"),
        ({"train": {"dcgan": {"attention_resolution": 3}}}, "train.dcgan.attention_resolution"),
        ({"train": {"dcgan": {"epochs": 0, "steps": 0}}}, "train.dcgan: epochs and steps"),
        ({"train": {"common": {"device": "tpu"}}}, "train.common.device = 'tpu' is not allowed"),
        ({"train": {"common": {"log_every": 0}}}, "train.common.log_every = 0 is out of range"),
    ],
)
def test_bad_train_params_exit_2_naming_the_key(
    tmp_path, data, monkeypatch, capsys, overrides, message
):
    from stages import train as stage

    params = write_params(tmp_path, overrides)
    argv = ["train", "--model", "dcgan", "--data", str(data), "--out", str(tmp_path / "m.pt"),
            "--live", str(tmp_path / "live"), "--params", str(params)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as caught:
        stage.main()
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "live").exists()


def test_a_corrupt_resume_checkpoint_is_reported_and_training_starts_afresh(tmp_path, data, capsys):
    overrides = {"train": {"vae": {"steps": 4, "batch_size": 32}}}
    clean = run_in_process(tmp_path / "clean", data, "vae", overrides)
    folder = tmp_path / "corrupt"
    folder.mkdir()
    image_set = load_image_set(data, mmap=False)
    _, _, _, raw = read_train_params(write_params(folder, overrides), "vae", image_set)
    resume_dir = folder / ".resume" / resume_key(raw, image_set)
    resume_dir.mkdir(parents=True)
    (resume_dir / "last.pt").write_bytes(b"PK\x03\x04 a truncated zip, not a checkpoint")
    again = run_in_process(folder, data, "vae", overrides)
    assert "cannot resume from" in capsys.readouterr().out
    assert again["step"] == 4
    assert_same_weights(clean, again)  # the broken file changed nothing

"""aigc.checkpoint: round trips, refusal of every kind of foreign file, model rebuilding."""

from __future__ import annotations

import dataclasses
import os
import pickle

import pytest
import torch

from aigc.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from aigc.models import MODELS


def payload(**extra):
    return {
        "family": "test",
        "config": {"sides": (4, 8)},
        "model": {"w": torch.arange(3.0)},
        **extra,
    }


class WritesAFile:
    """Unpickling this would create `target`: the attack weights_only loading must stop."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_round_trip_keeps_values_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, payload(step=3, meta={"classes": ["a", "b"], "seconds": 1.5}))
    loaded = load_checkpoint(path)
    assert loaded["format"] == "aigc-checkpoint" and loaded["version"] == 1
    assert loaded["config"] == {"sides": (4, 8)} and loaded["step"] == 3
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert loaded["meta"]["classes"] == ["a", "b"]
    assert os.listdir(path.parent) == ["model.pt"]


def test_saving_refuses_values_that_would_not_load(tmp_path):
    with pytest.raises(TypeError, match=r"payload\['meta'\]\['when'\] is a object"):
        save_checkpoint(tmp_path / "x.pt", payload(meta={"when": object()}))
    with pytest.raises(ValueError, match="lacks model"):
        save_checkpoint(tmp_path / "x.pt", {"family": "test", "config": {}})
    assert not (tmp_path / "x.pt").exists()


def bad_files(folder):
    """name -> a file that is not an aigc checkpoint."""
    good = folder / "good.pt"
    save_checkpoint(good, payload())
    data = good.read_bytes()
    files = {}
    files["truncated"] = folder / "truncated.pt"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["corrupt"] = folder / "corrupt.pt"
    files["corrupt"].write_bytes(bytes(range(256)) * 8)
    files["empty"] = folder / "empty.pt"
    files["empty"].write_bytes(b"")
    files["text"] = folder / "notes.pt"
    files["text"].write_text("these are not weights\n")
    files["pickle"] = folder / "pickled.pt"
    files["pickle"].write_bytes(pickle.dumps(WritesAFile(str(folder / "pwned-by-pickle"))))
    files["torch-pickle"] = folder / "torch-pickled.pt"
    torch.save({"model": WritesAFile(str(folder / "pwned-by-torch"))}, files["torch-pickle"])
    files["state_dict"] = folder / "state_dict.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), files["state_dict"])
    files["version"] = folder / "version.pt"
    torch.save({**payload(), "format": "aigc-checkpoint", "version": 99}, files["version"])
    return files


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("truncated", "corrupt or truncated"),
        ("corrupt", "not a torch file"),
        ("empty", "corrupt or truncated"),
        ("text", "corrupt or truncated"),
        ("pickle", "not a torch file"),
        ("torch-pickle", "pickles the Python object"),
        ("state_dict", "plain state_dict"),
        ("version", "version 99"),
    ],
)
def test_foreign_files_raise_one_line_naming_the_file(tmp_path, kind, reason):
    path = bad_files(tmp_path)[kind]
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and reason in message
    assert "\n" not in message
    assert not (tmp_path / "pwned-by-pickle").exists()
    assert not (tmp_path / "pwned-by-torch").exists()


def test_the_pickle_payload_really_would_write_the_file(tmp_path):
    """Guards the test above: unpickling the hostile file outside the loader does write."""
    target = tmp_path / "written"
    pickle.loads(pickle.dumps(WritesAFile(str(target)))).close()
    assert target.exists()


def test_missing_file_and_unknown_family(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    save_checkpoint(tmp_path / "x.pt", payload())
    with pytest.raises(CheckpointError, match="unknown model family 'test'"):
        load_model(tmp_path / "x.pt")


def test_load_model_rebuilds_the_family_with_ema_weights_in_eval_mode(tmp_path):
    config = MODELS["dcgan"].Config(image_size=16, channels=1, num_classes=0, width=8)
    model = MODELS["dcgan"](config)
    ema = MODELS["dcgan"](config).sampling_network  # other weights, standing in for the EMA
    path = tmp_path / "dcgan.pt"
    save_checkpoint(
        path,
        {
            "family": "dcgan",
            "config": dataclasses.asdict(config),
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "meta": {"classes": []},
        },
    )
    loaded, checkpoint = load_model(path)
    assert type(loaded) is MODELS["dcgan"] and loaded.config == config
    assert not loaded.training
    for name, tensor in ema.state_dict().items():
        assert torch.equal(loaded.sampling_network.state_dict()[name], tensor)
    for name, tensor in model.discriminator.state_dict().items():
        assert torch.equal(loaded.discriminator.state_dict()[name], tensor)
    assert checkpoint["meta"]["classes"] == []

    wrong = dataclasses.replace(config, width=16)
    save_checkpoint(
        path, {"family": "dcgan", "config": dataclasses.asdict(wrong), "model": model.state_dict()}
    )
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(path)

"""Expected errors end every stage the same way: one line on stderr naming the problem and a
non-zero exit (2 for params.yaml, 1 for the rest); a bug keeps its traceback.

The stages run in this process (`main([...])`), so a test sees the exit code and stderr exactly.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from conftest import random_images, write_params

from aigc.checkpoint import CheckpointError
from aigc.errors import exit_on_error
from aigc.imagesets import ImageSet, save_image_set
from aigc.params import ParamsError

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def one_error_line(capsys, stopped: pytest.ExceptionInfo, code: int) -> str:
    """The single stderr line of a stage that stopped with `code` (fails on anything else)."""
    assert stopped.value.code == code
    error = capsys.readouterr().err
    lines = error.splitlines()
    assert len(lines) == 1 and error == lines[0] + "\n", error
    assert lines[0].startswith("error: ")
    return lines[0]


def run(stage: str, *arguments) -> None:
    importlib.import_module(f"stages.{stage}").main([str(argument) for argument in arguments])


# ---------------------------------------------------------------------------------------------
# aigc/errors.py


def test_a_params_error_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as stopped, exit_on_error():
        raise ParamsError("split.seed = -1 is out of range")
    line = one_error_line(capsys, stopped, 2)
    assert line == "error: params.yaml: split.seed = -1 is out of range"


def test_a_file_error_names_the_file_and_exits_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped, exit_on_error():
        (tmp_path / "absent.json").read_text()
    line = one_error_line(capsys, stopped, 1)
    assert line == f"error: {tmp_path / 'absent.json'}: no such file or directory"


def test_named_errors_are_expected_and_a_long_message_stays_on_one_line(capsys):
    with pytest.raises(SystemExit) as stopped, exit_on_error(CheckpointError):
        raise CheckpointError("m.pt: corrupt\n  (details on a second line)")
    line = one_error_line(capsys, stopped, 1)
    assert line == "error: m.pt: corrupt (details on a second line)"


def test_an_error_about_one_setting_names_it_and_exits_2(capsys):
    with pytest.raises(SystemExit) as stopped, exit_on_error(ValueError, setting="--classes"):
        raise ValueError("'z' is not a class")
    assert one_error_line(capsys, stopped, 2) == "error: --classes: 'z' is not a class"
    with pytest.raises(SystemExit) as stopped, exit_on_error(ValueError, setting="sample.steps"):
        raise ValueError("more than timesteps")
    line = one_error_line(capsys, stopped, 2)
    assert line == "error: params.yaml: sample.steps: more than timesteps"


def test_an_unexpected_error_keeps_its_traceback(capsys):
    with pytest.raises(KeyError), exit_on_error(CheckpointError):
        raise KeyError("a bug")
    with pytest.raises(ValueError), exit_on_error(CheckpointError):  # ValueError not named
        raise ValueError("a bug")
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------------------
# Each stage: missing inputs, no GPU, an empty source


@pytest.fixture
def params(tmp_path):
    return write_params(tmp_path)


@pytest.fixture
def image_set(tmp_path):
    folder = tmp_path / "images"
    save_image_set(folder, ImageSet(random_images(64, 1, 16), np.arange(64) % 4, list("abcd")))
    return folder


MISSING = "/nonexistent/input"
STAGES_WITH_A_MISSING_INPUT = [
    ("clean", ["--raw", MISSING, "--out", "{tmp}/clean", "--metrics", "{tmp}/data.json"]),
    ("split", ["--clean", MISSING, "--out", "{tmp}/split"]),
    ("augment", ["--train", MISSING, "--out", "{tmp}/train", "--preview", "{tmp}/p.png"]),
    ("evaluator", ["--train", MISSING, "--val", MISSING, "--test", MISSING,
                   "--out", "{tmp}/e.pt", "--metrics", "{tmp}/e.json"]),
    ("train", ["--model", "dcgan", "--data", MISSING, "--out", "{tmp}/m.pt", "--live", "{tmp}/l"]),
    ("sample", ["--checkpoint", MISSING, "--out", "{tmp}/s", "--reports", "{tmp}/r"]),
    ("evaluate", ["--samples", MISSING, "--evaluator", MISSING]),
    ("evaluate", ["--samples", "{images}", "--evaluator", MISSING]),
]  # fmt: skip


@pytest.mark.parametrize(("stage", "arguments"), STAGES_WITH_A_MISSING_INPUT)
def test_a_missing_input_is_one_line_naming_it(
    stage, arguments, tmp_path, params, image_set, capsys
):
    filled = [a.format(tmp=tmp_path, images=image_set) for a in arguments]
    with pytest.raises(SystemExit) as stopped:
        run(stage, *filled, "--params", params)
    line = one_error_line(capsys, stopped, 1)
    assert MISSING in line
    assert any(words in line for words in ("no such", "not found")), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "params.yaml"]  # no output


@NO_GPU
@pytest.mark.parametrize(
    ("stage", "key", "arguments"),
    [
        ("evaluate", "evaluate.device", ["--samples", "{images}"]),
        ("evaluator", "evaluator.device",
         ["--train", "{images}", "--val", "{images}", "--test", "{images}",
          "--out", "{tmp}/e.pt", "--metrics", "{tmp}/e.json"]),
        ("train", "train.common.device",
         ["--model", "gan", "--data", "{images}", "--out", "{tmp}/m.pt", "--live", "{tmp}/l"]),
    ],
)  # fmt: skip
def test_cuda_without_a_gpu_is_one_line_naming_the_key(
    stage, key, arguments, tmp_path, image_set, capsys
):
    section, _, field = key.rpartition(".")
    overrides: dict = {}
    node = overrides
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[field] = "cuda"
    params = write_params(tmp_path, overrides)
    filled = [a.format(tmp=tmp_path, images=image_set) for a in arguments]
    with pytest.raises(SystemExit) as stopped:
        run(stage, *filled, "--params", params)
    line = one_error_line(capsys, stopped, 2)
    assert line.startswith(f"error: params.yaml: {key}") and "no cuda device" in line.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "params.yaml"]


def test_an_empty_folder_source_is_refused_by_collect(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    params = write_params(tmp_path, {"data": {"source": f"folder:{empty}"}})
    with pytest.raises(SystemExit) as stopped:
        run("collect", "--out", tmp_path / "raw", "--params", params)
    line = one_error_line(capsys, stopped, 1)
    assert "data.source" in line and str(empty) in line and "no items" in line
    assert not (tmp_path / "raw" / "manifest.csv").exists()
    assert not (tmp_path / "raw" / "items.bin").exists()


def test_an_empty_archive_source_is_refused_by_collect(tmp_path, capsys):
    import zipfile

    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    params = write_params(tmp_path, {"data": {"source": f"archive:{tmp_path / 'empty.zip'}"}})
    with pytest.raises(SystemExit) as stopped:
        run("collect", "--out", tmp_path / "raw", "--params", params)
    assert "no items" in one_error_line(capsys, stopped, 1)

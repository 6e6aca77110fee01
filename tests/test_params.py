"""Params: the typed loader itself, and the data stages' sections refusing bad values.

A bad value must stop a stage with exit status 2 and ONE line on stderr naming the dotted key,
before any work is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
import yaml
from conftest import tiny_params

from aigc.params import ParamsError, from_dict, load_section, spec
from stages.augment import main as augment_main
from stages.clean import main as clean_main
from stages.collect import main as collect_main
from stages.split import main as split_main

# ---------------------------------------------------------------------------------------------
# aigc/params.py


@dataclass(frozen=True)
class Inner:
    depth: int = spec(ge=1)


@dataclass(frozen=True)
class Example:
    rate: float = spec(gt=0.0, le=1.0)
    count: int = spec(ge=0, lt=10)
    name: str = spec(choices=("a", "b"))
    flag: bool = spec()
    sizes: tuple[int, ...] = spec(ge=1)
    kind: Literal["x", "y"] = spec()
    limit: int | None = spec(ge=0)
    inner: Inner = spec()
    optional: int = spec(default=7)
    derived: int = spec(default=0)


GOOD = {
    "rate": 0.5, "count": 3, "name": "a", "flag": True, "sizes": [1, 2], "kind": "x",
    "limit": None, "inner": {"depth": 2},
}  # fmt: skip


def test_a_good_section_is_typed():
    value = from_dict(Example, GOOD, "section")
    assert value == Example(0.5, 3, "a", True, (1, 2), "x", None, Inner(2), 7, 0)
    assert from_dict(Example, GOOD | {"rate": 1}, "s").rate == 1.0  # an int is a number
    assert isinstance(from_dict(Example, GOOD | {"rate": 1}, "s").rate, float)
    assert from_dict(Example, GOOD | {"limit": 4, "optional": 1}, "s").limit == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": 1}, "section.colour: unknown key; allowed keys: count, derived, flag"),
        ({"rate": None}, "section.rate = None has the wrong type"),
        ({"rate": "0.5"}, "section.rate = '0.5' has the wrong type; allowed: a number"),
        ({"rate": True}, "section.rate = True has the wrong type"),
        ({"rate": 0.0}, "section.rate = 0.0 is out of range; allowed: a number > 0.0 and <= 1.0"),
        ({"rate": 1.5}, "section.rate = 1.5 is out of range"),
        ({"count": 2.0}, "section.count = 2.0 has the wrong type; allowed: an integer"),
        ({"count": 10}, "section.count = 10 is out of range; allowed: an integer >= 0 and < 10"),
        ({"count": -1}, "section.count = -1 is out of range"),
        ({"name": "c"}, "section.name = 'c' is not allowed; allowed: a, b"),
        ({"flag": "yes"}, "section.flag = 'yes' has the wrong type; allowed: true or false"),
        ({"sizes": 3}, "section.sizes = 3 has the wrong type; allowed: a list of"),
        ({"sizes": [1, 0]}, "section.sizes[1] = 0 is out of range"),
        ({"kind": "z"}, "section.kind = 'z' is not allowed; allowed: x, y"),
        ({"limit": -1}, "section.limit = -1 is out of range"),
        ({"limit": "none"}, "section.limit = 'none' has the wrong type"),
        ({"inner": {"depth": 0}}, "section.inner.depth = 0 is out of range"),
        ({"inner": {"deep": 1}}, "section.inner.deep: unknown key"),
        ({"inner": 3}, "section.inner: expected a mapping of keys"),
    ],
)
def test_a_bad_value_names_its_key(change, message):
    with pytest.raises(ParamsError) as error:
        from_dict(Example, GOOD | change, "section")
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_a_missing_key_names_what_it_allows():
    values = {k: v for k, v in GOOD.items() if k != "count"}
    with pytest.raises(ParamsError, match=r"^section.count: missing key \(an integer >= 0"):
        from_dict(Example, values, "section")


def test_fixed_fields_come_from_code_not_params():
    value = from_dict(Example, GOOD, "section", fixed={"derived": 5})
    assert value.derived == 5
    with pytest.raises(ParamsError, match="section.derived: unknown key"):
        from_dict(Example, GOOD | {"derived": 1}, "section", fixed={"derived": 5})


def test_load_section_reads_dotted_sections_and_reports_file_problems(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"outer": {"example": GOOD}}))
    assert load_section(path, "outer.example", Example).count == 3
    with pytest.raises(ParamsError, match="outer.other: missing section"):
        load_section(path, "outer.other", Example)
    with pytest.raises(ParamsError, match="file not found"):
        load_section(tmp_path / "absent.yaml", "outer", Example)
    path.write_text("outer: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_section(path, "outer", Example)
    path.write_text("- a list\n")
    with pytest.raises(ParamsError, match="expected a mapping of sections"):
        load_section(path, "outer", Example)


# ---------------------------------------------------------------------------------------------
# The data stages refuse bad sections before doing anything


def run_collect(params: str, out) -> None:
    collect_main(["--out", str(out / "raw"), "--params", params])


def run_clean(params: str, out) -> None:
    clean_main(["--raw", str(out / "raw"), "--out", str(out / "clean"), "--metrics",
                str(out / "data.json"), "--params", params])  # fmt: skip


def run_split(params: str, out) -> None:
    split_main(["--clean", str(out / "clean"), "--out", str(out / "split"), "--params", params])


def run_augment(params: str, out) -> None:
    augment_main(["--train", str(out / "train"), "--out", str(out / "aug"), "--preview",
                  str(out / "p.png"), "--params", params])  # fmt: skip


STAGES = {"data": run_collect, "clean": run_clean, "split": run_split, "augment": run_augment}
CASES = [  # (section, key, value or DELETE, what the message says)
    ("data", "colour", 1, "unknown key"),
    ("data", "fit", "DELETE", "missing key"),
    ("data", "image_size", "big", "wrong type"),
    ("data", "channels", 2, "not allowed"),
    ("data", "image_size", 4, "out of range"),
    ("data", "source", "imagenet", "not allowed"),
    ("clean", "colour", 1, "unknown key"),
    ("clean", "blank_std", "DELETE", "missing key"),
    ("clean", "chunk_size", 1.5, "wrong type"),
    ("clean", "near_duplicate_distance", 9, "out of range"),
    ("clean", "near_duplicate_distance", -2, "out of range"),
    ("split", "colour", 1, "unknown key"),
    ("split", "seed", "DELETE", "missing key"),
    ("split", "val_fraction", "0.1", "wrong type"),
    ("split", "val_fraction", 1.0, "out of range"),
    ("split", "train_fraction", 0.0, "out of range"),
    ("augment", "colour", 1, "unknown key"),
    ("augment", "copies", "DELETE", "missing key"),
    ("augment", "hflip", True, "wrong type"),
    ("augment", "rotation", 200.0, "out of range"),
    ("augment", "shift_probability", 1.5, "out of range"),
]


@pytest.mark.parametrize(("section", "key", "value", "says"), CASES)
def test_a_stage_refuses_a_bad_section(tmp_path, capsys, section, key, value, says):
    params = tiny_params()
    if value == "DELETE":
        del params[section][key]
    else:
        params[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit) as stopped:
        STAGES[section](str(path), tmp_path)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert f"{section}.{key}" in lines[0] and says in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written

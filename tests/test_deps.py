"""dvc.yaml: each stage's `deps:` name every project file the stage runs, and none it never runs.

DVC re-runs a stage when one of its deps changes, so a project file (under `aigc/` or `stages/`)
that a stage loads but does not list is a change DVC cannot see: results go stale silently.

What a stage loads is measured, not guessed: a fresh Python imports the stage's module (from its
`cmd`, `python -m stages.NAME`) and reports every `aigc.*`/`stages.*` module in `sys.modules`.
A stage of a `foreach` over params.yaml `models` (or `text_models`) also runs its family (train
builds it, sample and evaluate load its checkpoint), so there the fresh Python also looks the
family up in `aigc.models.MODELS`, which imports that family's file and what it imports.
Imports inside functions count only when these two steps reach them.

The other direction is checked per stage group (a `foreach` with all its instances): a Python
file in `deps:` that no instance loads is stale and re-runs the stage for nothing. Within a
group one list serves every family, so `train@gan` lists ddpm's `unet.py` and `diffusion.py`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import REPO

PROJECT_PACKAGES = ("aigc", "stages")

# Run in a fresh interpreter: import the stage's module and report the project modules loaded;
# then, for each family named, report them again from a forked copy that has looked it up (so
# each family starts from the state right after the import, as a fresh interpreter would).
REPORT_LOADED = """
import importlib, json, os, sys

def project():
    return {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())
            if name.split(".")[0] in ("aigc", "stages")}

importlib.import_module(sys.argv[1])
found = {"": project()}
for family in sys.argv[2:]:
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        status = 1
        try:
            from aigc.models import MODELS
            MODELS[family]
            with os.fdopen(writer, "w") as pipe:
                pipe.write(json.dumps(project()))
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        found[family] = json.loads(pipe.read() or "null")
    if os.waitpid(child, 0)[1] != 0:
        sys.exit(f"looking up the family {family!r} failed")
print(json.dumps(found))
"""


def expand_stages(pipeline: dict, params: dict) -> dict[str, dict]:
    """dvc.yaml's stages with `foreach` over a params list expanded: name (or name@item) ->
    {"group", "cmd", "deps", "family"}; `family` is the item of a foreach over `models` or
    `text_models`."""
    stages = {}
    for name, stage in pipeline["stages"].items():
        if "foreach" not in stage:
            stages[name] = {"group": name, "cmd": stage["cmd"], "deps": list(stage.get("deps", []))}
            stages[name]["family"] = None
            continue
        key = re.fullmatch(r"\$\{(\w+)\}", stage["foreach"])
        if key is None:
            raise ValueError(f"{name}: foreach {stage['foreach']!r} is not a params list")
        for item in params[key[1]]:

            def fill(text: str, item: str = item) -> str:
                return text.replace("${item}", item)

            stages[f"{name}@{item}"] = {
                "group": name,
                "cmd": fill(stage["do"]["cmd"]),
                "deps": [fill(dep) for dep in stage["do"].get("deps", [])],
                "family": item if key[1] in ("models", "text_models") else None,
            }
    return stages


def stage_module(command: str) -> str:
    """The module a stage's command runs (`python -m stages.NAME ...` -> `stages.NAME`)."""
    found = re.search(r"python -m (stages\.\w+)", command)
    if found is None:
        raise ValueError(f"not a `python -m stages.NAME` command: {command!r}")
    return found[1]


def loaded_project_files(
    module: str, families: list[str], root: Path = REPO
) -> dict[str | None, set[str]]:
    """Project files (relative to `root`) that importing `module` loads in a fresh interpreter
    (key None), and that it loads with each of `families` looked up too (key: the family).
    A project module loaded from outside `root` is an error."""
    path = f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    result = subprocess.run(
        [sys.executable, "-c", REPORT_LOADED, module, *families],
        cwd=root, env=dict(os.environ, PYTHONPATH=path), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"importing {module} failed:\n{result.stderr[-3000:]}")
    return {
        family or None: _relative_files(modules, root)
        for family, modules in json.loads(result.stdout).items()
    }


def _relative_files(modules: dict[str, str | None], root: Path) -> set[str]:
    files = set()
    for name, file in modules.items():
        if file is None:  # a namespace package (no __init__.py): nothing to list
            continue
        path = Path(file).resolve()
        if not path.is_relative_to(root.resolve()):
            raise RuntimeError(f"{name} was imported from {path}, outside {root}")
        files.add(path.relative_to(root.resolve()).as_posix())
    return files


def missing_deps(deps: list[str], loaded: set[str]) -> list[str]:
    """Loaded files that `deps` do not cover (neither listed nor inside a listed folder)."""
    folders = [dep.rstrip("/") + "/" for dep in deps]
    return sorted(f for f in loaded if f not in deps and not any(f.startswith(d) for d in folders))


def stale_deps(deps: list[str], loaded_by_group: set[str]) -> list[str]:
    """Project Python files in `deps` that no stage of the group loads."""
    code = [dep for dep in deps if dep.endswith(".py") and dep.split("/")[0] in PROJECT_PACKAGES]
    return sorted(dep for dep in code if dep not in loaded_by_group)


def read_pipeline(root: Path = REPO) -> tuple[dict, dict]:
    return yaml.safe_load((root / "dvc.yaml").read_text()), yaml.safe_load(
        (root / "params.yaml").read_text()
    )


@pytest.fixture(scope="module")
def measured() -> tuple[dict[str, dict], dict[str, set[str]]]:
    """The real pipeline's stages and the files each loads (one fresh interpreter per stage
    module, two at a time)."""
    stages = expand_stages(*read_pipeline())
    families: dict[str, set[str]] = {}
    for stage in stages.values():
        wanted = families.setdefault(stage_module(stage["cmd"]), set())
        wanted.update([stage["family"]] if stage["family"] else [])
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {
            module: pool.submit(loaded_project_files, module, sorted(wanted))
            for module, wanted in families.items()
        }
        found = {module: run.result() for module, run in runs.items()}
    loaded = {name: found[stage_module(s["cmd"])][s["family"]] for name, s in stages.items()}
    return stages, loaded


# ---------------------------------------------------------------------------------------------
# The real dvc.yaml


def test_every_stage_lists_every_project_file_it_loads(measured):
    stages, loaded = measured
    assert {s["group"] for s in stages.values()} >= {"collect", "train", "sample", "evaluate"}
    problems = {name: missing_deps(s["deps"], loaded[name]) for name, s in stages.items()}
    assert {name: files for name, files in problems.items() if files} == {}


def test_no_stage_lists_a_project_file_none_of_its_group_loads(measured):
    stages, loaded = measured
    by_group: dict[str, set[str]] = {}
    for name, stage in stages.items():
        by_group.setdefault(stage["group"], set()).update(loaded[name])
    problems = {name: stale_deps(s["deps"], by_group[s["group"]]) for name, s in stages.items()}
    assert {name: files for name, files in problems.items() if files} == {}


def family_file(family: str) -> str:
    """The file of a registered family (its module in MODELS)."""
    from aigc.models import MODELS

    return MODELS.modules[family].replace(".", "/") + ".py"


def test_a_family_stage_loads_its_own_family_and_no_other(measured):
    stages, loaded = measured
    families = {family_file(stage["family"]) for stage in stages.values() if stage["family"]}
    assert len(families) >= 5
    for name, stage in stages.items():
        own = {family_file(stage["family"])} if stage["family"] else set()
        assert loaded[name] & families == own, name


# ---------------------------------------------------------------------------------------------
# The checks themselves, on stages made to fail


def test_a_dep_removed_from_dvc_yaml_is_reported():
    pipeline, params = read_pipeline()
    broken = copy.deepcopy(pipeline)
    broken["stages"]["split"]["deps"].remove("aigc/splits.py")
    broken["stages"]["train"]["do"]["deps"].remove("aigc/models/${item}.py")
    loaded = {  # what the split and train@gan stages load, as the fresh interpreter reports it
        "split": {"stages/split.py", "aigc/splits.py", "aigc/imagesets.py", "aigc/files.py",
                  "aigc/params.py", "aigc/errors.py"},
        "train@gan": {"stages/train.py", "aigc/training.py", "aigc/models/__init__.py",
                      "aigc/models/gan.py"},
    }  # fmt: skip
    good, bad = expand_stages(pipeline, params), expand_stages(broken, params)
    for name, files in loaded.items():
        assert missing_deps(good[name]["deps"], files) == []
    assert missing_deps(bad["split"]["deps"], loaded["split"]) == ["aigc/splits.py"]
    assert missing_deps(bad["train@gan"]["deps"], loaded["train@gan"]) == ["aigc/models/gan.py"]


def test_expansion_fills_the_item_and_names_the_family():
    pipeline = {
        "stages": {
            "prepare": {"cmd": "python -m stages.prepare", "deps": ["x", "stages/prepare.py"]},
            "fit": {
                "foreach": "${models}",
                "do": {"cmd": "python -m stages.fit --model ${item}",
                       "deps": ["stages/fit.py", "aigc/models/${item}.py"]},
            },
        }
    }  # fmt: skip
    stages = expand_stages(pipeline, {"models": ["a", "b"]})
    assert sorted(stages) == ["fit@a", "fit@b", "prepare"]
    assert stages["fit@b"]["deps"] == ["stages/fit.py", "aigc/models/b.py"]
    assert stages["fit@b"]["family"] == "b" and stages["prepare"]["family"] is None
    assert stage_module(stages["fit@a"]["cmd"]) == "stages.fit"
    assert missing_deps(["data", "aigc/"], {"aigc/x.py", "data/y"}) == []  # folders cover files
    assert stale_deps(["stages/fit.py", "aigc/gone.py", "data"], {"stages/fit.py"}) == [
        "aigc/gone.py"
    ]


def test_the_fresh_interpreter_reports_imports_of_imports_and_nothing_from_outside(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "aigc").mkdir()
    (tmp_path / "stages" / "fake.py").write_text("import aigc.fake_library\n")
    (tmp_path / "aigc" / "fake_library.py").write_text(
        "from aigc import fake_base\n\ndef later():\n    import aigc.fake_unused\n"
    )
    (tmp_path / "aigc" / "fake_base.py").write_text("import json\n")
    (tmp_path / "aigc" / "fake_unused.py").write_text("")
    loaded = loaded_project_files("stages.fake", [], root=tmp_path)[None]
    assert loaded == {"stages/fake.py", "aigc/fake_library.py", "aigc/fake_base.py"}
    deps = ["stages/fake.py", "aigc/fake_library.py"]  # fake_base.py forgotten
    assert missing_deps(deps, loaded) == ["aigc/fake_base.py"]

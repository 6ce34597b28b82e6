"""The layers are folders and they hold: no import points up, no folders and no modules import each other in a
circle, the picture is current, and no product file is too long to read."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import import_graph as g

LONGEST_FILE = 600  # lines


def test_every_module_belongs_to_the_folder_it_lives_in():
    modules = g.source_modules()
    owners = {module: g.part_of(module).folder for module in modules}  # KeyError: a folder no part claims
    empty = [part.folder for part in g.PARTS if part.folder not in owners.values()]
    assert not empty, f"parts with no module (stale PARTS table): {empty}"
    for module, path in modules.items():  # the part is a folder above the file, never a list of names
        assert path.relative_to(g.ROOT).as_posix().startswith(owners[module] + "/"), (module, owners[module])
    assert owners["lqmf.base.settings"] == "lqmf/base" and owners["lqmf.api"] == "lqmf"
    assert owners["server.runtime.manager"] == "server/runtime" and owners["server.http.routes.openai"] == "server/http"
    assert owners["server.runtime.backends.base"] == "server/runtime"


def test_every_folder_is_one_layer():
    layers = {}
    for part in g.PARTS:
        assert layers.setdefault(part.folder, part.layer) == part.layer, f"{part.folder} listed twice"
    for module in ("server.http.metrics", "server.http.asgi"):  # HTTP middleware is the HTTP face, by its folder
        assert g.part_of(module).layer == g.part_of("server.http.app").layer


def test_no_import_points_up_the_layers():
    assert g.upward(g.part_edges()) == []


def test_no_two_folders_import_each_other_in_a_circle():
    assert g.cycles(g.part_edges()) == []


def test_no_modules_import_each_other_in_a_circle():
    assert g.cycles(g.module_arrows()) == []


def test_no_product_file_is_longer_than_the_limit():
    long = {module: n for module, path in g.source_modules().items()
            if (n := len(path.read_text().splitlines())) > LONGEST_FILE}
    assert long == {}, f"split these (more than {LONGEST_FILE} lines): {long}"


def test_the_diagram_in_architecture_md_is_current():
    assert g.diagram_section() in g.ARCHITECTURE.read_text(), \
        "docs/ARCHITECTURE.md's import diagram is stale: run `python -m tests.import_graph --write`"


def test_the_checks_see_an_upward_arrow_and_a_circle():
    arrows = {("lqmf.base", "agents"): ["lqmf.base.settings -> agents.intents"],
              ("agents.measure", "agents.models"): ["x -> y"], ("agents.models", "agents.measure"): ["y -> x"]}
    assert g.upward(arrows) == ["lqmf.base.settings -> agents.intents"]
    assert g.cycles(arrows) == [["agents.measure", "agents.models", "agents.measure"]]
    assert g.cycles({("a", "b"), ("b", "c"), ("c", "a")}) == [["a", "b", "c", "a"]]
    assert g.cycles({("a", "b"), ("b", "c"), ("a", "c")}) == []


def test_a_module_in_an_unlisted_top_folder_is_refused(tmp_path):
    with pytest.raises(KeyError):
        g.part_of_path(g.ROOT / "elsewhere" / "mod.py")


def test_imports_inside_functions_and_relative_imports_count(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from agents.intents import Intent\n    from . import sibling\n")
    assert g.imports_of(source, "server.runtime.mod") == {"agents.intents", "server.runtime"}


@pytest.mark.parametrize("module, must_not_load", [
    ("lqmf.base.settings", ("agents", "server", "memory", "lqmf.api")),
    ("lqmf.base.manifest", ("agents", "server", "memory", "lqmf.api")),
    ("lqmf.base.generation", ("agents", "server", "memory", "lqmf.api", "numpy")),
    ("memory.store", ("agents", "server", "lqmf.api")),
    ("server.runtime.manager", ("agents", "lqmf.api", "server.http", "fastapi")),
    ("lqmf", ("agents", "server", "memory", "torch", "numpy")),
])
def test_a_lower_layer_loads_nothing_above_it(module, must_not_load):
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    above = [name for name in loaded if name.split(".")[0] in must_not_load
             or any(name == m or name.startswith(m + ".") for m in must_not_load)]
    assert above == [], f"importing {module} loaded {above[:10]}"

"""The layers hold: no import points up, no parts import each other in a circle, the picture is current."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import import_graph as g


def test_every_module_belongs_to_one_part():
    modules = g.source_modules()
    owners = {module: g.part_of(module).name for module in modules}  # KeyError: a folder no part claims
    empty = [part.name for part in g.PARTS if part.name not in owners.values()]
    assert not empty, f"parts with no module (stale PARTS table): {empty}"
    assert owners["lqmf.settings"] == "lqmf" and owners["lqmf.api"] == "lqmf.api"
    assert owners["server.manager"] == "server.runtime" and owners["server.routes.openai"] == "server.http"


def test_no_import_points_up_the_layers():
    assert g.upward(g.part_edges()) == []


def test_no_two_parts_import_each_other_in_a_circle():
    assert g.cycles(g.part_edges()) == []


def test_the_diagram_in_architecture_md_is_current():
    assert g.diagram_section() in g.ARCHITECTURE.read_text(), \
        "docs/ARCHITECTURE.md's import diagram is stale: run `python -m tests.import_graph --write`"


def test_the_checks_see_an_upward_arrow_and_a_circle():
    arrows = {("lqmf", "agents"): ["lqmf.settings -> agents.intents"],
              ("agents.measure", "agents.models"): ["x -> y"], ("agents.models", "agents.measure"): ["y -> x"]}
    assert g.upward(arrows) == ["lqmf.settings -> agents.intents"]
    assert g.cycles(arrows) == [["agents.measure", "agents.models", "agents.measure"]]


def test_imports_inside_functions_and_relative_imports_count(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from agents.intents import Intent\n    from . import sibling\n")
    assert g.imports_of(source, "server.mod") == {"agents.intents", "server"}


@pytest.mark.parametrize("module, must_not_load", [
    ("lqmf.settings", ("agents", "server", "memory", "lqmf.api")),
    ("lqmf.manifest", ("agents", "server", "memory", "lqmf.api")),
    ("memory.store", ("agents", "server", "lqmf.api")),
    ("server.manager", ("agents", "lqmf.api", "server.app", "fastapi")),
    ("lqmf", ("agents", "server", "memory", "torch", "numpy")),
])
def test_a_lower_layer_loads_nothing_above_it(module, must_not_load):
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    above = [name for name in loaded if name.split(".")[0] in must_not_load or name in must_not_load]
    assert above == [], f"importing {module} loaded {above[:10]}"

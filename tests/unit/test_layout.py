"""The folder tree mirrors the YAML: a reader who sees `processors: genai:` opens
processors/genai/__init__.py (or processors/genai.py) and finds the factory there; a detector
block `triggers: {cost_budget: ...}` is connectors/triggers/detectors/cost_budget.py (or a
package of that name)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from connectors.triggers import DETECTORS
from connectors.triggers.config import TriggersConfig
from pipeline.registry import factories

ROOT = Path(__file__).resolve().parents[2]
DETECTOR_DIR = ROOT / "connectors" / "triggers" / "detectors"
COMPONENTS = sorted((kind.section, name) for kind, table in factories().items() for name in table)


def root_module(folder: Path, name: str) -> Path:
    """The one file named after a YAML key: `name.py`, or the package `name/__init__.py`."""
    found = [p for p in (folder / f"{name}.py", folder / name / "__init__.py") if p.is_file()]
    assert len(found) == 1, f"{folder.relative_to(ROOT)}: expected {name}.py or {name}/__init__.py, found {found}"
    return found[0]


def factory_type(tree: ast.Module) -> str | None:
    """The type of the top-level `factory = Factory("<type>", ...)`, if the module defines one."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["factory"]
                and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "Factory"):
            first = node.value.args[0]
            return first.value if isinstance(first, ast.Constant) else None
    return None


@pytest.mark.parametrize(("section", "name"), COMPONENTS)
def test_each_component_key_names_the_file_that_defines_its_factory(section: str, name: str) -> None:
    path = root_module(ROOT / section, name)
    assert factory_type(ast.parse(path.read_text())) == name, f"{path.relative_to(ROOT)} does not define its factory"


@pytest.mark.parametrize("key", sorted(DETECTORS))
def test_each_detector_key_names_the_module_of_its_detector_and_config(key: str) -> None:
    detector = DETECTORS[key]
    config = type(getattr(TriggersConfig(), key))
    path = root_module(DETECTOR_DIR, key)
    module = "connectors.triggers.detectors." + key
    assert detector.kind == key and detector.__module__ == module, path
    assert config.__module__ in (module, module + ".config"), config


def test_no_detector_module_is_left_without_a_yaml_key() -> None:
    helpers = {"__init__", "base", "otlp_metrics"}  # the contract and the OTLP-metrics reading shared by two detectors
    modules = {p.stem if p.suffix == ".py" else p.name for p in DETECTOR_DIR.iterdir()
               if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert modules - helpers == set(DETECTORS)

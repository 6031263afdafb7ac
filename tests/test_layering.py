"""The package's layers import one way: core <- rungs <- train <- measure <- notebook.

A module may import from its own layer and from the layers below it, never from one above; a
rung may build on a lower rung of the ladder (Tensor on Value), never on a higher one. The package
root (`microgpt_lib/__init__.py`) is the front door: it re-exports the names a reader starts with.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "microgpt_lib"
LAYERS = ["core", "rungs", "train", "measure", "notebook"]


def layer_of(module: str) -> str:
    """The layer of a dotted module name inside microgpt_lib ("core" for the top level)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def rung_of(module: str) -> int | None:
    """N for microgpt_lib.rungs.rungN_*..., None elsewhere."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "rungs" and parts[2].startswith("rung"):
        return int(parts[2][4])
    return None


def imports_of(path: Path) -> list[str]:
    """Every microgpt_lib module that the file imports (absolute imports only)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import; the package uses absolute ones"
            if node.module.startswith("microgpt_lib"):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("microgpt_lib")]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_run_down_the_layers(path):
    me = module_name(path)
    if me == "microgpt_lib":
        return  # the front door
    for target in imports_of(path):
        assert target != "microgpt_lib", f"{me} imports the package root; import the module itself"
        assert LAYERS.index(layer_of(target)) <= LAYERS.index(layer_of(me)), (
            f"{me} ({layer_of(me)}) imports {target} ({layer_of(target)}), a higher layer")
        mine, theirs = rung_of(me), rung_of(target)
        if mine is not None and theirs is not None:
            assert theirs <= mine, f"rung {mine} ({me}) imports a higher rung: {target}"


def test_layering_check_sees_every_layer():
    """The check above is not vacuous: every layer exists and is imported from somewhere."""
    assert {layer_of(module_name(p)) for p in MODULES} == set(LAYERS)
    assert layer_of("microgpt_lib.train.loop") == "train" and layer_of("microgpt_lib.optim") == "core"
    assert rung_of("microgpt_lib.rungs.rung3_numpy.tensor") == 3

"""The package's rooms import only from the rooms below them: no cycle, and no import tucked inside a function
to dodge one. Each module also imports on its own."""
import ast
import importlib
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nexttok"
# lowest first; a module may import from any lower layer (and, inside a subpackage, from its own layer)
LAYERS = [
    {"config"},
    {"graphs", "recipe"},
    {"tokens"},
    {"models"},
    {"objectives"},
    {"resolve"},
    {"rundir", "devices", "memory"},
    {"records", "distributed", "evaluate", "mechanisms", "baseline", "plots"},
    {"data", "explorer"},
    {"train"},
    {"runs", "bench"},
    {"sweep", "chapter", "learning"},
    {"claims"},
    {"cli", "__init__"},
    {"__main__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def room(path: Path) -> str:
    """The top-level room a file belongs to: nexttok/train.py -> train, nexttok/models/gpt.py -> models."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_rooms(path: Path) -> list[tuple[str, int, bool]]:
    """(room, line, at top level) of every import of another nexttok room in a file."""
    tree = ast.parse(path.read_text())
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    out = []
    depth_of_file = len(path.relative_to(PACKAGE).parts) - 1  # 0 for nexttok/x.py, 1 for nexttok/models/x.py
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            up = node.level - 1 - depth_of_file  # < 0: a sibling inside the same subpackage
            if up < 0:
                continue
            if node.module:
                target = node.module.split(".")[0]
                out.append((target, node.lineno, id(node) not in inside))
            else:  # from . import x
                out += [(a.name, node.lineno, id(node) not in inside) for a in node.names]
    return out


def test_config_is_the_ground_floor():
    """RunConfig imports nothing of the package: a script can build, read and hash configs without torch."""
    assert imported_rooms(PACKAGE / "config.py") == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers_only_and_at_the_top(path):
    mine = room(path)
    assert mine in LEVEL, f"{mine} is in no layer of this test"
    for target, line, top in imported_rooms(path):
        if target == mine:
            continue
        assert LEVEL[target] < LEVEL[mine], f"{path.name}:{line} imports {target}, which is not below {mine}"
        assert top, f"{path.name}:{line} imports {target} inside a function"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_imports_on_its_own(path):
    name = ".".join(("nexttok",) + path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    if name.endswith("__main__"):
        return  # running it is the CLI
    saved = {k: v for k, v in sys.modules.items() if k == "nexttok" or k.startswith("nexttok.")}
    for k in saved:
        del sys.modules[k]
    try:
        importlib.import_module(name)
    finally:
        for k in [k for k in sys.modules if k == "nexttok" or k.startswith("nexttok.")]:
            del sys.modules[k]
        sys.modules.update(saved)

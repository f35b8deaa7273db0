"""The layout shows the architecture: entry points alone at the package root, and no package
imports one above it (docs/architecture.md gives the order)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "encdec"
# lowest first: a package may import those before it, never those after it
LAYERS = [
    "utils",
    "modules",
    "decoding",
    "networks",
    "metrics",
    "data",
    "training",
    "launch",
    "callbacks",
    "inference",
    "reports",
]
ENTRY_POINTS = {"train", "evaluate", "translate", "caption", "transcribe", "speak", "tune", "fast"}


def layer_of(module: str) -> int:
    """The layer index of a module ``encdec.<package>...``; the root's modules come last."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 else len(LAYERS)


def test_the_package_root_holds_the_entry_points_only():
    root_modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert root_modules == ENTRY_POINTS
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        LAYERS
    )


def test_nothing_imports_upward():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        module = ".".join(("encdec", *parts)).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("encdec."):
                if layer_of(node.module) > layer_of(module):
                    upward.append(f"{module} imports {node.module}")
    assert upward == []

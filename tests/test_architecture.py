"""ARCHITECTURE.md stays true: every module is in its map, and data flows one way."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["data", "models", "inference", "reports"]  # each may import only those before it
FOLDERS = ["misalign", *LAYERS]


def modules():
    for folder in FOLDERS:
        for p in sorted((REPO / folder).rglob("*.py")):
            yield p.relative_to(REPO).as_posix()


def test_every_module_is_mapped_and_every_mapped_module_exists():
    text = (REPO / "ARCHITECTURE.md").read_text()
    mapped = set(re.findall(r"`((?:misalign|data|models|inference|reports)/[\w/]+\.py)`", text))
    actual = set(modules())
    assert actual - mapped == set(), f"modules missing from ARCHITECTURE.md: {actual - mapped}"
    assert mapped - actual == set(), f"ARCHITECTURE.md names missing files: {mapped - actual}"


def test_data_flows_one_way():
    for i, layer in enumerate(LAYERS):
        forbidden = {f"misalign.{x}" for x in LAYERS[i + 1:]} | {"misalign.api", "misalign.cli"}
        for p in (REPO / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for n in names:
                    assert not any(n == f or n.startswith(f + ".") for f in forbidden), \
                        f"{p.relative_to(REPO)} imports {n} (data → models → inference → reports)"


def test_modules_stay_small():
    for m in modules():
        n = len((REPO / m).read_text().splitlines())
        assert n <= 400, f"{m} has {n} lines: split it"

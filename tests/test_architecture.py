"""ARCHITECTURE.md stays true: every module is in its map, data flows one way, no import
circles, and only the registry dispatches on the kind of analysis."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["data", "models", "inference", "reports"]  # each may import only those before it
FOLDERS = ["misalign", *LAYERS]
BASES = {"BayesianModel", "AnalysisResults"}  # the analysis frame's base classes
KIND_ATTR = "misalign_model"  # models/serialize.py: the file attribute naming the analysis
# The registry dispatches; the serialiser writes and checks the kind attribute.
MAY_DISPATCH = {"inference/registry.py"}
MAY_READ_KIND = {"inference/registry.py", "models/serialize.py"}


def modules():
    for folder in FOLDERS:
        for p in sorted((REPO / folder).rglob("*.py")):
            yield p.relative_to(REPO).as_posix()


def dotted(rel: str) -> str:
    parts = rel.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts if parts[0] == "misalign" else ["misalign", *parts])


def test_every_module_is_mapped_and_every_mapped_module_exists():
    text = (REPO / "ARCHITECTURE.md").read_text()
    mapped = set(re.findall(r"`((?:misalign|data|models|inference|reports)/[\w/]+\.py)`", text))
    actual = set(modules())
    assert actual - mapped == set(), f"modules missing from ARCHITECTURE.md: {actual - mapped}"
    assert mapped - actual == set(), f"ARCHITECTURE.md names missing files: {mapped - actual}"


def imported(rel: str) -> set[str]:
    """Every package module ``rel`` imports, wherever the import statement stands (inside
    functions and ``TYPE_CHECKING`` blocks too)."""
    names = {dotted(m) for m in modules()}
    here = dotted(rel)
    package = here if rel.endswith("__init__.py") else here.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse((REPO / rel).read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in names else base)
    return {n for n in out if n in names and n != here}


def test_data_flows_one_way():
    for i, layer in enumerate(LAYERS):
        forbidden = {f"misalign.{x}" for x in LAYERS[i + 1:]} | {"misalign.api", "misalign.cli"}
        for p in (REPO / layer).rglob("*.py"):
            rel = p.relative_to(REPO).as_posix()
            for n in imported(rel):
                assert not any(n == f or n.startswith(f + ".") for f in forbidden), \
                    f"{rel} imports {n} (data → models → inference → reports)"


def test_no_import_circles():
    graph = {dotted(m): imported(m) for m in modules()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycle = stack[stack.index(m):] + [m]
                raise AssertionError("import circle: " + " → ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_modules_stay_small():
    for m in modules():
        n = len((REPO / m).read_text().splitlines())
        assert n <= 400, f"{m} has {n} lines: split it"


# -- only the registry dispatches on the kind of analysis ---------------------------------------
def frame_classes() -> tuple[set[str], set[str]]:
    """Names of the concrete model and results classes, and the kinds they declare."""
    defs = {}
    for m in modules():
        for node in ast.walk(ast.parse((REPO / m).read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                         for b in node.bases}
                kind = next((s.value.value for s in node.body if isinstance(s, ast.Assign)
                             and any(getattr(t, "id", "") == "kind" for t in s.targets)
                             and isinstance(s.value, ast.Constant)), None)
                defs[node.name] = (bases, kind)
    concrete, changed = set(), True
    while changed:
        changed = False
        for name, (bases, _) in defs.items():
            if name not in concrete and name not in BASES and bases & (BASES | concrete):
                concrete.add(name)
                changed = True
    return concrete, {defs[c][1] for c in concrete if defs[c][1]}


def _names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Tuple):
        return set().union(*(_names(e) for e in node.elts))
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    return set()


def dispatch_violations(source: str, concrete: set[str], kinds: set[str],
                        may_dispatch: bool = False, may_read_kind: bool = False) -> list[str]:
    """Places in ``source`` that choose code by the concrete analysis or the file's kind."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("isinstance", "issubclass") and len(node.args) == 2 and \
                    _names(node.args[1]) & concrete and not may_dispatch:
                found.append(f"line {line}: {node.func.id} on {_names(node.args[1]) & concrete}")
            if node.func.id == "file_kind" and not may_read_kind:
                found.append(f"line {line}: reads the file's kind")
        if isinstance(node, ast.Compare) and not may_dispatch:
            operands = [node.left, *node.comparators]
            # Values that name an analysis: kind strings, class names (as text or as names).
            named = any(
                (isinstance(e, ast.Constant) and e.value in kinds | concrete)
                or _names(e) & concrete
                for o in operands
                for e in (o.elts if isinstance(o, (ast.Tuple, ast.List, ast.Set)) else [o]))
            if named:  # kind == "e1", type(m) is GStudyModel, cls.__name__ == "E1Results", …
                found.append(f"line {line}: compares with an analysis kind or class")
        if isinstance(node, ast.MatchClass) and _names(node.cls) & concrete and not may_dispatch:
            found.append(f"line {line}: match on {_names(node.cls)}")
        if isinstance(node, ast.Constant) and node.value == KIND_ATTR and not may_read_kind:
            found.append(f"line {line}: names the kind attribute '{KIND_ATTR}'")
        if isinstance(node, ast.Subscript) and _names(node.slice) & {"KIND_ATTR"} and \
                not may_read_kind:
            found.append(f"line {line}: reads the kind attribute")
    return found


def test_only_the_registry_dispatches_on_the_analysis():
    concrete, kinds = frame_classes()
    assert {"VariancePartitionModel", "GStudyModel", "E1Results", "GStudyResults"} <= concrete
    assert {"e1", "gstudy"} <= kinds
    bad = {}
    for m in modules():
        v = dispatch_violations((REPO / m).read_text(), concrete, kinds,
                                may_dispatch=m in MAY_DISPATCH, may_read_kind=m in MAY_READ_KIND)
        if v:
            bad[m] = v
    assert not bad, f"dispatch on the analysis outside the registry: {bad}"


def test_the_dispatch_check_catches_each_form():
    concrete, kinds = {"E1Results", "GStudyModel"}, {"e1", "gstudy"}
    planted = [
        "if isinstance(model, GStudyModel): pass",
        "if isinstance(r, (int, E1Results)): pass",
        "if type(model) is GStudyModel: pass",
        "if model.__class__.__name__ == 'GStudyModel': pass",
        "if results.kind == 'e1': pass",
        "if kind in ('e1', 'gstudy'): pass",
        "k = tree.attrs['misalign_model']",
        "k = tree.attrs[KIND_ATTR]",
        "k = file_kind(tree)",
        "match m:\n    case GStudyModel(): pass",
    ]
    for src in planted:
        assert dispatch_violations(src, concrete, kinds), src
    clean = "res = load(path)\nrows = res.quantities()\nif isinstance(x, dict): pass"
    assert dispatch_violations(clean, concrete, kinds) == []
    assert dispatch_violations(planted[0], concrete, kinds, may_dispatch=True) == []

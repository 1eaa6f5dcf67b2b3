"""The package's layers (../shared/DESIGN.md, section 3): a module imports only from its own layer or below, the
packages import each other without cycles, and inside rtil/study/ each module imports only the ones before it. Every
import counts, also those inside functions."""

import ast
from pathlib import Path

from rtil.study import MODULE_ORDER

RTIL = Path(__file__).resolve().parent.parent / "rtil"

# Lowest first; a name is a module or a subpackage of rtil. DESIGN.md: errors, atomic files, nn, data -> models ->
# latents, checkpoints -> importers, config -> evaluation -> inverse, training -> study, demo, cli. weights and
# cli_checks are helpers that import nothing of rtil but errors; members samples the families of latents.
LAYERS = (
    ("errors", "atomic_files", "weights", "cli_checks", "nn", "data"),
    ("models",),
    ("latents", "members", "checkpoints"),
    ("importers", "config"),
    ("evaluation",),
    ("inverse", "training"),
    ("study", "demo", "cli", "__main__", "__init__"),  # rtil/__init__.py re-exports the public names
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def rtil_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of an rtil module in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            names = [node.module] if node.module.startswith("rtil.") else []
            if node.module == "rtil":
                names = [f"rtil.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("rtil.")]
        else:
            continue
        out += [(node.lineno, name) for name in names]
    return out


def modules():
    for path in sorted(RTIL.rglob("*.py")):
        yield path, path.relative_to(RTIL).parts


def test_every_module_of_rtil_has_a_layer():
    tops = {parts[0].removesuffix(".py") for _, parts in modules()}
    assert tops - set(LAYER) == set(), "add the new module or package to LAYERS (and to DESIGN.md)"


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for path, parts in modules():
        top = parts[0].removesuffix(".py")
        for line, name in rtil_imports(path):
            target = name.split(".")[1]
            if LAYER[target] > LAYER[top]:
                upward.append(f"rtil/{'/'.join(parts)}:{line} ({top}) imports {name}")
    assert upward == []


def test_the_packages_import_each_other_without_cycles():
    graph = {name: set() for name in LAYER}
    for path, parts in modules():
        top = parts[0].removesuffix(".py")
        graph[top] |= {name.split(".")[1] for _, name in rtil_imports(path)} - {top}
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for target in sorted(graph[node]):
            visit(target, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_study_modules_import_only_the_ones_before_them():
    files = {p.stem for p in (RTIL / "study").glob("*.py")} - {"__init__"}
    assert files == set(MODULE_ORDER), "list every rtil/study module in rtil.study.MODULE_ORDER"
    backward = []
    for name in MODULE_ORDER:
        for line, imported in rtil_imports(RTIL / "study" / f"{name}.py"):
            if imported.startswith("rtil.study."):
                target = imported.split(".")[2]
                if MODULE_ORDER.index(target) >= MODULE_ORDER.index(name):
                    backward.append(f"rtil/study/{name}.py:{line} imports {imported}")
            elif imported == "rtil.study":
                backward.append(f"rtil/study/{name}.py:{line} imports the package rtil.study")
    assert backward == []

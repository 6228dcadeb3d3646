"""No import cycle among gan_ablate's modules (issue 14): every `import`/`from` statement counts, those under
`if TYPE_CHECKING:` and inside functions too, since each is a dependency a reader follows. Losses import
nothing from tricks/, and no trick imports the module that runs them."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "gan_ablate"


def module_names(package: Path) -> dict[str, Path]:
    root = package.parent
    return {".".join(p.with_suffix("").relative_to(root).parts).removesuffix(".__init__"): p
            for p in package.rglob("*.py")}


def imported(module: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that `module` imports anywhere in its file (`from a import b` counts a.b
    when b is a module, else a)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules and name != module}


def import_graph(package: Path) -> nx.DiGraph:
    modules = module_names(package)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for module, path in modules.items():
        graph.add_edges_from((module, other) for other in imported(module, path, set(modules)))
    return graph


def cycles(graph: nx.DiGraph) -> list[list[str]]:
    return [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]


def test_no_import_cycle_among_the_packages_modules():
    assert cycles(import_graph(PACKAGE)) == []


def test_losses_import_nothing_from_tricks():
    graph = import_graph(PACKAGE)
    assert [m for m in nx.descendants(graph, "gan_ablate.losses") if m.startswith("gan_ablate.tricks")] == []


def test_no_trick_module_imports_the_training_module():
    graph = import_graph(PACKAGE)
    assert [m for m in graph if m.startswith("gan_ablate.tricks") and graph.has_edge(m, "gan_ablate.module")] == []


def test_the_walk_sees_imports_under_type_checking_inside_functions_and_relative_ones(tmp_path):
    """A package whose cycles are each made by one kind of import the walk must see."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "b.py": "def f():\n    import pkg.a\n",
        "sub/__init__.py": "from . import c\n",
        "sub/c.py": "from .. import d\n",
        "d.py": "from pkg.sub.c import C\n",
        "e.py": "import pkg.a\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    assert sorted(cycles(import_graph(package))) == [["pkg.a", "pkg.b"], ["pkg.d", "pkg.sub.c"]]

"""No import cycles between OpenSSM's modules.

Imports under ``TYPE_CHECKING`` and inside functions count: a cycle hidden in either still means
two modules that cannot be read, tested or layered apart (``console/app.py`` and
``console/routes.py`` were one). Between packages, the layers contract in pyproject.toml rules
cycles out; this walk finds them between any two modules.
"""

from __future__ import annotations

import grimp


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, imported = work[-1]
            step = next(imported, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph.find_modules_directly_imported_by(step)))))
                elif step in on_stack:
                    low[module] = min(low[module], index[step])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_back() -> None:
    graph = grimp.build_graph("openssm")
    assert len(graph.modules) > 150  # the walk really saw the package
    assert cycles(graph) == []


def test_the_walk_finds_cycles_direct_and_long() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [
        ("p.app", "p.routes"),
        ("p.routes", "p.app"),  # direct
        ("p.a", "p.b"),
        ("p.b", "p.c"),
        ("p.c", "p.a"),  # through a third
        ("p.c", "p.leaf"),
        ("p.top", "p.a"),
    ]:
        graph.add_import(importer=importer, imported=imported)
    assert sorted(cycles(graph)) == [["p.a", "p.b", "p.c"], ["p.app", "p.routes"]]

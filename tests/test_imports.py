"""The package's modules import one another without a circle (read from the source with ast: imports inside
functions count too, since a late import only hides a circle). The floors are in docs/development.md."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = "segmenter"


def modules(root: str = ROOT) -> dict:
    """{dotted name: path} of every module under segmenter/ (a package is its __init__)."""
    out = {}
    for d, _, names in os.walk(os.path.join(root, PKG)):
        for n in names:
            if n.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, n), root)[:-3].split(os.sep)
                out[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = os.path.join(d, n)
    return out


def imports(name: str, path: str, known: dict) -> set:
    """The modules of the package that `name` imports anywhere in its source."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_pkg = path.endswith("__init__.py")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package holding this module
                parts = name.split(".")[: len(name.split(".")) - node.level + is_pkg]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def cycles(graph: dict) -> list:
    """One circle (a list of modules, first == last) through each strongly connected group of graph."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(circle_in(graph, group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def circle_in(graph: dict, group: set) -> list:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & group):
            if w == start:
                return path + [start]
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return [start]


def test_no_import_circle_in_the_package():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert len(graph) > 30 and sum(map(len, graph.values())) > 50, f"graph too small to be real: {len(graph)}"
    found = cycles(graph)
    assert not found, "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_circle_finder_finds_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_every_module_imports():
    """Each module of the package imports on its own (the fast tier touches every one at least this far)."""
    import importlib

    failed = {}
    for name in sorted(modules()):
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001  (collected, reported together)
            failed[name] = f"{type(e).__name__}: {e}"
    assert not failed, f"modules that do not import: {failed}"

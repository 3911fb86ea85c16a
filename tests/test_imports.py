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


# The floors of docs/development.md, lowest first: a module imports only from its own floor or below. A module is
# placed by its longest listed prefix (the twin's Inferencer sits with the front doors, not with the twin's layers).
FLOORS = (
    ("bottom", ("class_names", "convert", "datasets", "quiet", "resample", "runtime", "shards", "windows")),
    ("models", ("models", "pytorch")),
    ("pictures", ("visualize",)),
    ("compiled and parity", ("deploy", "parity")),
    ("engine", ("engine",)),
    ("front", ("inference", "pytorch.inference", "demo", "")),
)


def floor_of(name: str) -> int:
    """The index in FLOORS of the floor holding module `name` (segmenter.X...)."""
    rest = name[len(PKG) + 1 :] if name != PKG else ""
    best, level = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (rest == p or rest.startswith(p + ".") or p == "") and len(p) > best:
                best, level = len(p), i
    return level


def arrows_up(graph: dict) -> list:
    """Every import that runs from a lower floor to a higher one, as 'a (floor) -> b (floor)'."""
    return [
        f"{a} ({FLOORS[floor_of(a)][0]}) -> {b} ({FLOORS[floor_of(b)][0]})"
        for a in sorted(graph)
        for b in sorted(graph[a])
        if floor_of(b) > floor_of(a)
    ]


def test_imports_go_down_the_floors():
    """No arrow runs back up: pictures never import the engine, models never import the front doors."""
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert all(floor_of(n) is not None for n in known), [n for n in known if floor_of(n) is None]
    up = arrows_up(graph)
    assert not up, "imports that run up a floor: " + "; ".join(up)


def test_the_floor_check_sees_an_arrow_up():
    graph = {"segmenter.visualize.panels": {"segmenter.engine.infer"}, "segmenter.engine.infer": set()}
    assert arrows_up(graph) == ["segmenter.visualize.panels (pictures) -> segmenter.engine.infer (engine)"]


def test_the_installed_package_holds_no_workshop(monkeypatch):
    """setup.py ships segmenter/ and its subpackages only: benchmarks/, tests/ and parity_tests/ stay in the checkout
    (setuptools.setup is captured, so this reads the packages setup.py would really install)."""
    import runpy

    import setuptools

    got = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: got.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="__main__")
    packages = set(got["packages"])
    assert {"segmenter", "segmenter.engine", "segmenter.convert", "segmenter.models"} <= packages, sorted(packages)
    outside = sorted(p for p in packages if p.split(".")[0] != PKG)
    assert not outside, f"setup.py would install {outside} beside the product"
    assert not any("bench" in p for p in packages), sorted(packages)

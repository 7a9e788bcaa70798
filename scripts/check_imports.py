"""Checks that keras_has's imports point one way, down the layers.

Reads every import statement of `keras_has/` (function-level ones included) with `ast`
and fails (exit 1) on:
- a cycle between modules;
- a cycle between sub-packages (`keras_has.config`, `keras_has.data`, ...);
- an import that points up the layer order of docs/architecture.md (`LAYERS` below);
- `keras_has.config` importing anything of the product other than itself.

    python scripts/check_imports.py            # prints the package graph, exit 0 / 1
"""
from __future__ import annotations

import ast
import os
import sys

# Bottom to top; a package may import only packages before it in this list.
LAYERS = ("config", "util", "hiding", "data", "models", "methods", "localize", "train",
          "serve", "experiments", "temporal", "cli")
# The former module paths kept importable; nothing in the product may import them.
FACADES = ("localization", "metrics", "export")


def module_graph(root: str) -> dict[str, set[str]]:
    """`{module: {imported keras_has modules}}` for every .py file under `root`."""
    base = os.path.dirname(os.path.abspath(root))
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
                files[module[:-len(".__init__")] if module.endswith(".__init__") else module] = path

    def resolve(name):
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in files.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        deps = set()
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(parts + ([target] if target else []))
                names = [target] + [f"{target}.{alias.name}" for alias in node.names]
            for name in names:
                if name.split(".")[0] != "keras_has":
                    continue
                found = resolve(name)
                # A package's own __init__ and a module's parent packages are not edges.
                if found and found != module and found != "keras_has" and \
                        not module.startswith(found + "."):
                    deps.add(found)
        graph[module] = deps
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of `graph`: its strongly connected components of two or more nodes."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_of(module: str) -> str:
    """`keras_has.train.trainer` -> `train`; a top-level module is its own package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        if module == "keras_has":  # the package's lazy exports (no import statements)
            continue
        own = package_of(module)
        out.setdefault(own, set())
        out[own].update(package_of(d) for d in deps if package_of(d) != own)
    return out


def problems(root: str) -> list[str]:
    """Every violation found under `root` (a `keras_has` folder), as lines."""
    graph = module_graph(root)
    packages = package_graph(graph)
    found = [f"module cycle: {' <-> '.join(c)}" for c in strongly_connected(graph)]
    found += [f"package cycle: {' <-> '.join(c)}" for c in strongly_connected(packages)]
    for package, deps in sorted(packages.items()):
        for dep in sorted(deps):
            if dep in FACADES:
                found.append(f"{package} imports the former path keras_has.{dep}")
            elif package in LAYERS and dep in LAYERS and \
                    LAYERS.index(dep) > LAYERS.index(package):
                found.append(f"{package} imports {dep}, a layer above it")
            elif package in LAYERS and dep not in LAYERS:
                found.append(f"{package} imports {dep}, which is in no layer")
    for package in packages:
        if package not in LAYERS and package not in FACADES:
            found.append(f"keras_has.{package} is in no layer (add it to LAYERS)")
    return found


def main() -> int:
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "keras_has")
    graph = package_graph(module_graph(root))
    for package in [*LAYERS, *FACADES]:
        if package in graph:
            print(f"{package:12s} -> {', '.join(sorted(graph[package])) or '(nothing)'}")
    found = problems(root)
    for line in found:
        print("FAIL:", line)
    print("imports: ok" if not found else f"imports: {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

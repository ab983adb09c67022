"""The package's import graph: which module imports which, and any cycles.

Reads the source (no imports run). Every ``from .x import`` / ``import emotion2vec_plus.x`` counts,
at module level or inside a function (a lazy import is still a dependency). Usage:

    python tools/import_graph.py            # module -> the package modules it imports, then cycles
    python tools/import_graph.py --check    # exit 1 on a cycle, argparse outside cli/, or a private name imported
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "emotion2vec_plus"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(package modules imported, top-level third-party/stdlib names imported) by one file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    ours, theirs = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                submodules = {f"{target}.{alias.name}" for alias in node.names} & MODULES
                # "from . import x" imports the submodule x; "from .x import name" imports x itself.
                ours.update(submodules or ({target} & MODULES))
            elif node.module and node.module.split(".")[0] == "emotion2vec_plus":
                ours.add(node.module)
            elif node.module:
                theirs.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("emotion2vec_plus"):
                    ours.add(alias.name)
                else:
                    theirs.add(alias.name.split(".")[0])
    ours.discard(name)
    if name != "emotion2vec_plus":
        ours.discard("emotion2vec_plus")  # importing a sibling through the package is the sibling's edge
    return ours, theirs


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p)[0] for p in sorted(PACKAGE.rglob("*.py"))}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def unresolved_imports() -> list[str]:
    """Relative imports (anywhere, lazy ones included) whose module is not in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # "from . import x": each x must be a submodule or the package's name
                    continue
                if target not in MODULES:
                    found.append(f"{name}: from {'.' * node.level}{node.module} ({target} does not exist)")
    return found


def private_imports() -> list[str]:
    """``from .x import _name``: one module reaching into another's private names."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("emotion2vec_plus")):
                found += [f"{module_name(path)}: {alias.name} from {'.' * node.level}{node.module or ''}"
                          for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def argparse_outside_cli() -> list[str]:
    return [module_name(p) for p in sorted(PACKAGE.rglob("*.py"))
            if "argparse" in imports_of(p)[1] and not module_name(p).startswith("emotion2vec_plus.cli")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    edges = graph()
    loops, parsers, private, unresolved = cycles(edges), argparse_outside_cli(), private_imports(), unresolved_imports()
    if not args.check:
        short = lambda m: m.removeprefix("emotion2vec_plus.") or "emotion2vec_plus"  # noqa: E731
        for module, targets in edges.items():
            print(f"{short(module):22} -> {', '.join(sorted(short(t) for t in targets)) or '-'}")
    for loop in loops:
        print("cycle: " + " -> ".join(loop), file=sys.stderr)
    for module in parsers:
        print(f"{module} imports argparse (only emotion2vec_plus.cli may)", file=sys.stderr)
    for line in private:
        print(f"private name imported: {line}", file=sys.stderr)
    for line in unresolved:
        print(f"unresolved import: {line}", file=sys.stderr)
    return 1 if loops or parsers or private or unresolved else 0


if __name__ == "__main__":
    sys.exit(main())

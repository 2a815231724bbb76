#!/usr/bin/env python3
"""Lists the `crate::` edges between rotator's top-level modules and fails on a cycle.

A top-level module is `src/<name>.rs` or the folder `src/<name>/`. An edge A -> B is any
`crate::B` path written in code under A (comments and doc links are not code). `lib.rs` and
`main.rs` sit above every module and are not checked.

Exit status: 0 with no cycle, 1 with the cycles listed (each as its strongly connected set and
the edges inside it, with the files that make them), 2 on a usage error.
"""
import re
import sys
from collections import defaultdict
from pathlib import Path

PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
LINE_COMMENT = re.compile(r"//.*$", re.MULTILINE)
BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
STRING = re.compile(r'"(?:\\.|[^"\\])*"')


def top_module(src: Path, file: Path) -> str | None:
    rel = file.relative_to(src)
    if len(rel.parts) == 1:
        return None if rel.stem in ("lib", "main") else rel.stem
    return rel.parts[0]


def edges(src: Path) -> dict[tuple[str, str], set[str]]:
    modules = {p.stem for p in src.glob("*.rs")} | {p.name for p in src.iterdir() if p.is_dir()}
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for file in sorted(src.rglob("*.rs")):
        module = top_module(src, file)
        if module is None:
            continue
        code = file.read_text()
        code = BLOCK_COMMENT.sub("", code)
        code = STRING.sub('""', code)
        code = LINE_COMMENT.sub("", code)
        for target in PATH.findall(code):
            # `crate::run` and the like are items of lib.rs, not modules.
            if target != module and target in modules:
                found[(module, target)].add(str(file.relative_to(src.parent)))
    return found


def strongly_connected(nodes: set[str], graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns only the components that hold a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return components


def main() -> int:
    if len(sys.argv) > 2:
        print("usage: module_cycles.py [SRC_DIR]", file=sys.stderr)
        return 2
    src = Path(sys.argv[1] if len(sys.argv) == 2 else Path(__file__).resolve().parent.parent / "src")
    found = edges(src)
    graph: dict[str, set[str]] = defaultdict(set)
    nodes: set[str] = set()
    for a, b in found:
        graph[a].add(b)
        nodes.update((a, b))
    for a in sorted(graph):
        print(f"{a} -> {', '.join(sorted(graph[a]))}")
    cycles = strongly_connected(nodes, graph)
    if not cycles:
        print(f"no cycle between {len(nodes)} top-level modules")
        return 0
    for component in cycles:
        members = set(component)
        print(f"\ncycle between: {', '.join(component)}")
        for (a, b), files in sorted(found.items()):
            if a in members and b in members:
                print(f"  {a} -> {b}: {', '.join(sorted(files))}")
    return 1


if __name__ == "__main__":
    sys.exit(main())

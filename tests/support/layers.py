"""The package's import graph, read from its source with ``ast``, and the rules it must keep.

Every import statement counts, at module level or inside a function (those run too, just later), except under
``if TYPE_CHECKING:``. Layers, lowest first; a module may import its own layer and any lower one, never a higher:
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "omegaml_otel"
#: (layer, module prefixes); the longest matching prefix decides a module's layer
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("omegaml_otel.settings", "omegaml_otel.errors", "omegaml_otel.conventions",
                    "omegaml_otel._internal.guard", "omegaml_otel._internal")),
    ("stores", ("omegaml_otel._internal.stores",)),
    ("export", ("omegaml_otel._internal.export",)),
    ("capture", ("omegaml_otel._internal.capture", "omegaml_otel.instrumentation")),
    ("read", ("omegaml_otel._internal.compat", "omegaml_otel.telemetry")),
    ("runtimes", ("omegaml_otel._internal.runtimes", "omegaml_otel.tasks", "omegaml_otel.worker")),
    ("drivers", ("omegaml_otel.cli", "omegaml_otel")),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def modules(src: Path) -> dict[str, Path]:
    """{dotted module name: file} of every module of the package under ``src``."""
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer(module: str) -> str:
    best = max(((len(p), name) for name, prefixes in LAYERS for p in prefixes
                if module == p or module.startswith(p + ".")), default=None)
    if best is None:
        raise ValueError(f"module {module} is in no layer: add it to LAYERS in tests/support/layers.py")
    return best[1]


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of import nodes under ``if TYPE_CHECKING:`` (never executed)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported module of the package, line, at module level) for each import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_blocks(tree)
    top = {id(n) for n in tree.body} | {id(n) for stmt in tree.body if isinstance(stmt, ast.Try)
                                        for n in ast.walk(stmt)}
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import name`: the submodule when `name` is one, else the package itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                while target not in known:  # `import omegaml_otel.x.y` where y is an attribute: its module
                    target = target.rsplit(".", 1)[0]
                out.append((target, node.lineno, id(node) in top))
    return out


def graph(src: Path) -> dict[str, set[str]]:
    mods = modules(src)
    return {m: {t for t, _, _ in imports(m, p, set(mods)) if t != m} for m, p in mods.items()}


def upward_imports(src: Path) -> list[str]:
    """Every import of a higher layer, as 'module:line imports target (layer -> layer)'."""
    mods = modules(src)
    found = []
    for m, p in mods.items():
        for target, line, _ in imports(m, p, set(mods)):
            if RANK[layer(target)] > RANK[layer(m)]:
                found.append(f"{m}:{line} imports {target} ({layer(m)} -> {layer(target)})")
    return found


def cycles(src: Path) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    g = graph(src)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in g:
        if v not in index:
            visit(v)
    return out


def unexplained_local_imports(src: Path) -> list[str]:
    """Imports inside functions without a comment (on their line or one of the two above) saying why."""
    found = []
    for m, p in modules(src).items():
        lines = p.read_text().splitlines()
        tree = ast.parse("\n".join(lines), str(p))
        skip = _type_checking_blocks(tree)
        top = {id(n) for n in tree.body} | {id(n) for stmt in tree.body if isinstance(stmt, ast.Try)
                                            for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top and id(node) not in skip:
                first = node.lineno - 1
                while first > 0 and (not lines[first - 1].strip()
                                     or lines[first - 1].strip().startswith(("import ", "from ", "try:"))):
                    first -= 1  # one comment may explain a group of imports
                around = lines[max(0, first - 2):node.end_lineno]
                if not any("#" in line for line in around):
                    found.append(f"{m}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return found

"""The layering rules, checked on the source: bot/ stays the core, no module or package cycles."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "jobs", "tagbot", "wecom_sim")
FORBIDDEN_FROM_BOT = ("handlers", "jobs", "tagbot", "wecom_sim")


def module_name(path: Path) -> str:
    """Return the dotted name of a source file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def imported_names(path: Path, name: str, modules: set[str]) -> set[str]:
    """Return every module name a file imports, at any depth (lazy imports count too).

    `from pkg import x` imports the module pkg.x when there is one, else a name of pkg.
    """
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                sub = f"{prefix}.{alias.name}"
                found.add(sub if sub in modules else prefix)
    return found


def import_graph() -> dict[str, set[str]]:
    """Return module → the project's modules it imports."""
    files = {module_name(p): p for p in source_files()}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        imported = imported_names(path, name, set(files))
        graph[name] = {m for m in imported if m in files and m != name}
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """Return one import cycle as a path of modules (first == last), or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, black) == grey:
                return [*stack[stack.index(nxt) :], nxt]
            if colour.get(nxt) == white:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = black
        return None

    for node in sorted(graph):
        if colour[node] == white:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_bot_imports_no_outer_package() -> None:
    graph = import_graph()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.split(".")[0] == "bot"
        for target in targets
        if target.split(".")[0] in FORBIDDEN_FROM_BOT
    )
    assert wrong == []


def test_no_import_cycles_outside_the_simulator() -> None:
    graph = {
        m: {t for t in targets if not t.startswith("wecom_sim")}
        for m, targets in import_graph().items()
        if not m.startswith("wecom_sim")
    }
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The shape of the cycle this layout removed: dispatch → welcome lane → dispatch.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from bot import inbox, metrics\n", {"bot.inbox", "bot"}),
        ("import bot.tags.outbox\n", {"bot.tags.outbox"}),
        ("def f():\n    from handlers.app import create_app\n", {"handlers.app"}),
        ("from . import sibling\n", {"bot.sibling"}),
    ],
)
def test_imports_are_read_at_any_depth(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "m.py"
    path.write_text(source, "utf-8")
    assert imported_names(path, "bot.m", {"bot.inbox", "bot.sibling"}) == expected


def test_the_simulator_imports_nothing_of_the_bot() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if module.startswith("wecom_sim")
        for target in targets
        if not target.startswith("wecom_sim")
    )
    assert wrong == []


def test_the_test_import_check_sees_both_spellings(tmp_path: Path) -> None:
    # The checker below must see both spellings of importing a test module.
    path = tmp_path / "test_m.py"
    path.write_text("from tests.test_a import f\nfrom tests import test_b\n", "utf-8")
    found = imported_names(path, "tests.test_m", {"tests.test_a", "tests.test_b"})
    assert {"tests.test_a", "tests.test_b"} <= found


def test_no_test_module_imports_another() -> None:
    # Shared helpers live in tests/support/, fixtures in conftest; a test module, or conftest,
    # is never a library.
    files = {module_name(p): p for p in sorted((ROOT / "tests").rglob("*.py"))}
    test_modules = {m for m in files if m.split(".")[-1].startswith(("test_", "conftest"))}
    wrong = sorted(
        f"{module} imports {target}"
        for module, path in files.items()
        for target in imported_names(path, module, set(files))
        if target in test_modules and target != module
    )
    assert wrong == []


# --- bot/'s packages: no ring between them, no runtime locator in their signatures -------


def package_of(module: str) -> str | None:
    """Return the bot/ node a module belongs to: its first-level package, or itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bot" else None


def package_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Return package → the packages it imports (within bot/, lazy imports counted)."""
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = package_of(module)
        if source is not None:
            found = packages.setdefault(source, set())
            found.update(t for t in map(package_of, targets) if t is not None and t != source)
    return packages


def tangles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Return each group of nodes that reach one another (strongly connected, size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def ties(graph: Mapping[str, set[str]], group: list[str]) -> list[str]:
    """Return the module imports that tie a group of packages together."""
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if {package_of(module), package_of(target)} <= set(group)
        and package_of(module) != package_of(target)
    )


def test_bot_packages_import_no_cycle() -> None:
    # Each first-level package of bot/, and each top-level module, is one node; an import
    # anywhere inside it, lazy or not, is an edge. Packages in a ring cannot be read,
    # tested or moved one without the other.
    graph = import_graph()
    found = tangles(package_graph(graph))
    assert not found, "\n".join(
        " ↔ ".join(g) + ":\n  " + "\n  ".join(ties(graph, g)) for g in found
    )


def test_the_package_check_folds_modules_into_packages() -> None:
    graph = {
        "bot.a.x": {"bot.b.y", "bot.c"},
        "bot.b.y": {"bot.a.z"},
        "bot.a.z": set(),
        "bot.c": {"handlers.app"},
        "handlers.app": {"bot.a.x"},
    }
    folded = package_graph(graph)
    assert folded == {"bot.a": {"bot.b", "bot.c"}, "bot.b": {"bot.a"}, "bot.c": set()}
    assert tangles(folded) == [["bot.a", "bot.b"]]
    assert tangles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert ties(graph, ["bot.a", "bot.b"]) == ["bot.a.x imports bot.b.y", "bot.b.y imports bot.a.z"]


def locator_parameters(source: str) -> list[tuple[int, str]]:
    """Return (line, "f(param)") for each parameter named `rt` or annotated with Runtime."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
            for p in params:
                annotation = ast.unparse(p.annotation) if p.annotation is not None else ""
                if p.arg == "rt" or re.search(r"\bRuntime\b", annotation):
                    found.append((node.lineno, f"{getattr(node, 'name', '<lambda>')}({p.arg})"))
    return found


def test_no_function_in_bot_takes_the_runtime() -> None:
    # bot/ functions show what they use: `*, session` for services, `*, db, wecom, ...` for
    # orchestrators. Only the composition (handlers/, jobs/, tagbot/) holds a Runtime.
    found: dict[str, int] = {}
    for path in sorted((ROOT / "bot").rglob("*.py")):
        if path.name != "runtime.py" or path.parent != ROOT / "bot":
            for line, where in locator_parameters(path.read_text("utf-8")):
                found.setdefault(f"{path.relative_to(ROOT)} {where}", line)
    listed = [f"{k} (line {line})" for k, line in found.items()]
    assert not listed, "the Runtime as a parameter in bot/:\n" + "\n".join(listed)


def test_the_locator_check_sees_names_and_annotations() -> None:
    source = (
        "def a(rt): ...\n"
        "def b(x, *, runtime: 'Runtime') -> None: ...\n"
        "def c(parts: list[Runtime]) -> None: ...\n"
        "f = lambda rt: rt\n"
        "def d(rtt: int, runtime_id: int, session: object, db: MyRuntimeDb) -> None: ...\n"
    )
    assert locator_parameters(source) == [
        (1, "a(rt)"),
        (2, "b(runtime)"),
        (3, "c(parts)"),
        (4, "<lambda>(rt)"),
    ]

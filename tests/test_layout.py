"""The layering rules, checked on the source: bot/ stays the core, and no module cycles."""

from __future__ import annotations

import ast
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


# Modules of bot/ whose functions still take the Runtime (issue 17 converts them one by
# one): the set must shrink as they are converted, and nothing new may join it.
STILL_TAKING_RUNTIME = frozenset(
    {
        "bot.outreach.execute",
        "bot.outreach.follow_up",
        "bot.outreach.group_message",
        "bot.outreach.plan",
        "bot.outreach.results",
        "bot.outreach.service",
        "bot.outreach.tier_alerts",
        "bot.outreach.webhook",
        "bot.tags.outbox",
        "bot.tags.push",
        "bot.tiering.handoff",
        "bot.tiering.service",
    }
)


def takes_runtime(path: Path) -> list[str]:
    """Return the functions of a file with an `rt` parameter or one typed Runtime."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs):
                typed = ast.unparse(arg.annotation) if arg.annotation else ""
                if arg.arg == "rt" or "Runtime" in typed:
                    found.append(node.name)
                    break
    return found


def test_bot_functions_take_their_parts_not_the_runtime() -> None:
    taking = {
        module_name(path)
        for path in source_files()
        if module_name(path).split(".")[0] == "bot" and takes_runtime(path)
    }
    assert taking == STILL_TAKING_RUNTIME


def test_the_runtime_check_sees_a_parameter_by_name_and_by_type(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(
        "def a(rt): ...\ndef b(*, runtime: Runtime) -> None: ...\ndef c(*, db: Database): ...\n",
        "utf-8",
    )
    assert takes_runtime(path) == ["a", "b"]

"""Find every row lock in the code (`with_for_update`, `FOR UPDATE` in SQL) and its tables.

A lock's tables are the models and SQL table names its statement names, following the
names it uses to their assignments (in its function, then in its module), so a lock on a
query built in steps or on a module-level statement is traced to the table it takes.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_LOCK_SQL = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b")
_TABLE_SQL = re.compile(r"\b(?:FROM|UPDATE|JOIN|INTO)\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


@dataclass(frozen=True)
class LockSite:
    path: str
    line: int
    scope: str
    tables: frozenset[str]

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.scope}) locks {sorted(self.tables) or '?'}"


def _assignments(body: list[ast.stmt]) -> dict[str, list[ast.expr]]:
    """Map each name assigned at this level (not in nested functions) to its values."""
    found: dict[str, list[ast.expr]] = {}
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).append(node.value)
        elif (
            isinstance(node, ast.AnnAssign | ast.AugAssign)
            and node.value is not None
            and isinstance(node.target, ast.Name)
        ):
            found.setdefault(node.target.id, []).append(node.value)
        stack.extend(ast.iter_child_nodes(node))
    return found


class _Module:
    def __init__(self, tree: ast.Module, models: dict[str, str], tables: frozenset[str]):
        self.models = models
        self.known = tables
        self.module_names = _assignments(tree.body)

    def tables(self, node: ast.AST, local: dict[str, list[ast.expr]]) -> frozenset[str]:
        found: set[str] = set()
        seen: set[str] = set()
        stack: list[ast.AST] = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, ast.Name | ast.Attribute):
                name = item.id if isinstance(item, ast.Name) else item.attr
                if name in self.models:
                    found.add(self.models[name])
                if isinstance(item, ast.Name) and name not in seen:
                    seen.add(name)
                    stack.extend(local.get(name) or self.module_names.get(name, []))
            elif isinstance(item, ast.Constant) and isinstance(item.value, str):
                found |= {t for t in _TABLE_SQL.findall(item.value) if t in self.known}
            stack.extend(ast.iter_child_nodes(item))
        return frozenset(found)


def _docstrings(tree: ast.Module) -> set[int]:
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def lock_sites(
    source: str, path: str, models: dict[str, str], tables: frozenset[str]
) -> list[LockSite]:
    """Return the row locks in one module's source: each with the tables it takes."""
    if "with_for_update" not in source and not _LOCK_SQL.search(source):
        return []  # nothing to find: skip the parse
    tree = ast.parse(source)
    module = _Module(tree, models, tables)
    docs = _docstrings(tree)
    sites: list[LockSite] = []

    def visit(node: ast.AST, scope: str, local: dict[str, list[ast.expr]], stmt: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = f"{scope}.{node.name}" if scope else node.name
            names = {**local, **_assignments(node.body)}
            for child in node.body:
                visit(child, inner, names, child)
            return
        if isinstance(node, ast.ClassDef):
            for child in node.body:
                visit(child, f"{scope}.{node.name}" if scope else node.name, local, child)
            return
        if isinstance(node, ast.stmt):
            stmt = node  # a SQL string's statement: the innermost one holding it
        target: ast.AST | None = None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "with_for_update":
                target = func.value
            elif any(
                k.arg == "with_for_update"
                and not (isinstance(k.value, ast.Constant) and not k.value.value)
                for k in node.keywords
            ):
                target = node
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docs
            and _LOCK_SQL.search(node.value)
        ):
            target = stmt
        if target is not None:
            where = scope or _stmt_name(stmt)
            sites.append(LockSite(path, node.lineno, where, module.tables(target, local)))  # type: ignore[attr-defined]
        for child in ast.iter_child_nodes(node):
            visit(child, scope, local, stmt)

    for stmt in tree.body:
        visit(stmt, "", {}, stmt)
    return sites


def _stmt_name(stmt: ast.AST) -> str:
    if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    return "<module>"


def python_files(root: Path, packages: tuple[str, ...]) -> Iterator[Path]:
    for package in packages:
        yield from sorted((root / package).rglob("*.py"))

"""YAML files whose errors name the file, the line and the path inside the file.

Shared by the rules file (`rules.py`) and rule-test files (`ruletest.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

Lines = dict[tuple[Any, ...], int]


class YamlError(ValueError):
    """The text is not YAML; `problem` says where and why."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def load_located(text: str, path: Path) -> tuple[Any, Lines]:
    """The data of a YAML text and the line of every path in it."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlError(f"{where}: not valid YAML: {problem}") from None
    lines: Lines = {}
    if node is not None:
        for loc, line in _walk(node, ()):
            lines.setdefault(loc, line)
    return data, lines


def problem(path: Path, lines: Lines, loc: tuple[Any, ...], message: str) -> str:
    """`file:line: path.inside[0]: message`, at the nearest line known for `loc`."""
    line = next((lines[loc[:end]] for end in range(len(loc), -1, -1) if loc[:end] in lines), 1)
    return f"{path}:{line}: {dotted(loc) or '(top level)'}: {message}"


def dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out


def validation_problems(path: Path, exc: ValidationError, lines: Lines) -> list[str]:
    """One located line per pydantic error, worded as a fix."""
    problems = []
    for error in exc.errors():
        loc = tuple(
            p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function"))
        )
        kind = error["type"]
        if kind == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}: remove it or check its spelling"
        elif kind == "missing":
            message = f"missing required key {loc[-1]!r}"
            loc = loc[:-1]
        elif kind == "too_short" and loc:
            message = f"{loc[-1]!r} must not be empty"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(problem(path, lines, loc, message))
    return problems


def _walk(node: yaml.Node, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], int]]:
    yield loc, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, key.value)
            yield child, key.start_mark.line + 1
            yield from _walk(value, child)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _walk(item, (*loc, i))

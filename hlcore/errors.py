"""The error tree that the CLI maps to exit codes (1: a check failed, 2: bad input)."""

from __future__ import annotations

from dataclasses import dataclass


class HlcoreError(Exception):
    """Base of every error hlcore raises on purpose; anything else is a bug."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located as precisely as we can."""

    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [p for p in (where, self.path) if p]
        return ": ".join([*parts, self.message])


class BadInput(HlcoreError):
    """An input (policy, config, drill, env) is invalid; the message names file, line and path."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, Problem):
            problems = [problems]
        elif isinstance(problems, str):
            problems = [Problem(file="", path="", message=problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class CheckFailed(HlcoreError):
    """A check ran and said no (lint warning promoted, refused operator command, failed drill)."""

    exit_code = 1

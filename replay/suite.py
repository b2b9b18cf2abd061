"""Every drill under `fixtures/`: discovery, the run of the whole suite (the engine behind
`hlcore drill`, the drill benchmark and `hlcore diff`'s behavioural half), and coverage: which
declared machine transitions and rule rows the drills exercised."""

from __future__ import annotations

import fnmatch
import multiprocessing
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hlcore.errors import BadInput
from hlcore.policy.model import ANY_STATE, Policy
from replay.drill import DRILL_FILE
from replay.registry import vocabulary
from replay.runner import Outcome, replay


def discover(root: Path, pattern: str | None = None) -> list[Path]:
    """Drill folders under `root`, by name; `pattern` is a substring or a glob of the name."""
    found = sorted(p.parent for p in root.glob(f"*/{DRILL_FILE}"))
    if pattern:
        found = [d for d in found if pattern in d.name or fnmatch.fnmatch(d.name, pattern)]
    return found


@dataclass
class DrillResult:
    name: str
    seconds: float
    outcome: Outcome | None = None
    problems: list[str] | None = None  # bad input: the located problems (exit 2)
    cpu_s: float = 0.0  # CPU of the process running it (all threads) while it ran

    @property
    def verdict(self) -> str:
        return "error" if self.problems is not None else (self.outcome.verdict if self.outcome else "error")


@dataclass
class SuiteResult:
    results: list[DrillResult] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)

    @property
    def passed(self) -> int:
        return sum(r.verdict == "pass" for r in self.results)

    @property
    def failed(self) -> list[DrillResult]:
        return [r for r in self.results if r.verdict == "fail"]

    @property
    def errors(self) -> list[DrillResult]:
        return [r for r in self.results if r.verdict == "error"]

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)

    def outcomes(self) -> list[Outcome]:
        return [r.outcome for r in self.results if r.outcome is not None]


def run_one(directory: Path, policy: Path | None, config: Path | None, coverage: bool) -> DrillResult:
    """One drill, all its runs; bad input becomes the result's located problems."""
    started, cpu = time.perf_counter(), time.process_time()
    try:
        outcome = replay(directory, policy, config, coverage=coverage)
    except BadInput as exc:
        return DrillResult(directory.name, time.perf_counter() - started, problems=[str(p) for p in exc.problems],
                           cpu_s=time.process_time() - cpu)
    return DrillResult(directory.name, time.perf_counter() - started, outcome, cpu_s=time.process_time() - cpu)


def run_suite(dirs: Iterable[Path], *, policy: Path | None = None, config: Path | None = None,
              coverage: bool = False, jobs: int = 1,
              on_done: Callable[[DrillResult], None] | None = None) -> SuiteResult:
    """Every drill, in order; with `jobs > 1` in that many fresh (`spawn`ed) processes, since
    drills are independent and each is single-core bound. Results keep the discovery order."""
    dirs = list(dirs)
    policy = policy.resolve() if policy is not None else None
    config = config.resolve() if config is not None else None
    results: dict[int, DrillResult] = {}
    if jobs > 1 and len(dirs) > 1:
        context = multiprocessing.get_context("spawn")  # a fork could inherit another thread's lock
        with ProcessPoolExecutor(max_workers=min(jobs, len(dirs)), mp_context=context) as pool:
            order = sorted(range(len(dirs)), key=lambda i: -_cost_hint(dirs[i]))  # the longest first
            futures = {pool.submit(run_one, dirs[i].resolve(), policy, config, coverage): i for i in order}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_done is not None:
                    on_done(results[futures[future]])
    else:
        for i, directory in enumerate(dirs):
            results[i] = run_one(directory, policy, config, coverage)
            if on_done is not None:
                on_done(results[i])
    suite = SuiteResult([results[i] for i in range(len(dirs))])
    for r in suite.results:
        if r.outcome is not None:
            suite.hits.update(r.outcome.hits)
    return suite


def _cost_hint(directory: Path) -> int:
    """A rough cost of a drill, to start the long ones first so no worker is left with a long
    drill at the end (only the order of work changes, never a result): a monitor drill simulates
    every minute of 200 wallets, a copy-trader drill a few calls; each variant is another run."""
    try:
        text = (directory / DRILL_FILE).read_text(encoding="utf-8")
    except OSError:
        return 0
    runs = 1 + text.count("\n  - name:")
    if "\napp: monitor" not in text:
        return runs
    minutes = max((int(h or 0) * 60 + int(m or 0) for h, m in _AT.findall(text)), default=0)
    return runs * (10 + minutes)


_AT = re.compile(r"\bat: \"?(?:(\d+)h)?(?:(\d+)m)?")


@dataclass
class Coverage:
    transitions: list[tuple[str, str, str, bool]]  # (machine, "sources -> dest", event, exercised)
    rows: list[tuple[str, int]]  # (table.row, hits)
    words: list[tuple[str, list[str]]] = field(default_factory=list)  # (table:word, drills using it)

    @property
    def unused_words(self) -> list[str]:
        return [w for w, drills in self.words if not drills]

    @property
    def missing_transitions(self) -> list[tuple[str, str, str]]:
        return [(m, t, e) for m, t, e, hit in self.transitions if not hit]

    @property
    def missing_rows(self) -> list[str]:
        return [r for r, n in self.rows if not n]


def coverage(policy: Policy, outcomes: Iterable[Outcome], hits: Counter[str]) -> Coverage:
    """A declared transition is exercised when some journal moved its machine by its event from
    one of its sources to its destination (a reason-only change counts: its audit row)."""
    outcomes = list(outcomes)
    seen: set[tuple[str, str, str | None, str]] = set()
    for outcome in outcomes:
        for e in outcome.entries:
            if e["kind"] in ("transition", "audit") and e.get("machine"):
                seen.add((e["machine"], e["event"], e["from"], e["to"]))
    rows: list[tuple[str, str, str, bool]] = []
    for name in sorted(policy.machines):
        machine = policy.machines[name]
        for t in machine.transitions:
            hit = any(m == name and ev == t.event and to == t.dest and (ANY_STATE in t.sources or frm in t.sources)
                      for m, ev, frm, to in seen)
            rows.append((name, f"{','.join(t.sources)} -> {t.dest}", t.event, hit))
    table_rows = [(f"{table.name}.{row.id}", hits.get(f"{table.name}.{row.id}", 0))
                  for table in policy.tables for row in table.rows]
    return Coverage(rows, sorted(table_rows), words_used(outcomes))


def words_used(outcomes: Iterable[Outcome]) -> list[tuple[str, list[str]]]:
    """Every registered drill word ("step:fault", "check:state", ...) with the drills that use it."""
    users: dict[str, list[str]] = {f"{table}:{name}": [] for table, kinds in vocabulary().items() for name in kinds}
    for outcome in outcomes:
        for word in outcome.words:
            users.setdefault(word, []).append(outcome.drill)
    return sorted((word, sorted(drills)) for word, drills in users.items())


def summary_rows(suite: SuiteResult) -> list[dict[str, Any]]:
    out = []
    for r in suite.results:
        runs = sorted({e["run"] for e in r.outcome.entries}) if r.outcome else []
        first = ""
        if r.problems is not None:
            first = r.problems[0] if r.problems else "bad input"
        elif r.outcome is not None and r.outcome.failures:
            first = r.outcome.failures[0]
        out.append({"drill": r.name, "verdict": r.verdict, "runs": len(runs), "seconds": round(r.seconds, 2),
                    "first_failure": first})
    return out

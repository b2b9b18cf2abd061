"""`hlcore diff`'s behavioural half: drills replayed under both sides (above the core: it runs `replay`).

Drills run in worker processes (two per drill) because each replay boots the real copy-trader or
monitor on its own SQLite database. The base side of a drill is cached (`cache_dir`), keyed by the
hash of the code that replays it, the side's policy and settings, and the drill's fixture: diffing
a change against the same base again replays only the head side. A drill's committed golden
journal is its base side too when its coverage file vouches that the golden is the journal of a run
under this code and exactly the base side's hashes (`from_golden`): a diff against the committed
policy then replays only the head side even with an empty cache. What is compared and reported
is `hlcore.diff.behaviour`.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from hlcore.diff.behaviour import NO_DRILLS, BehaviourReport, DrillChange, Replayed, _mask, compare
from hlcore.diff.semantic import canonical
from hlcore.diff.sides import Side
from hlcore.errors import HlcoreError


def replay_one(drill: Path, policy: Path, config: Path | None, hashes: tuple[str, ...]) -> Replayed:
    """Run in a worker: replay one drill under one side and reduce it to comparable lines."""
    try:
        from replay.runner import replay

        outcome = replay(drill, policy, config=config)
    except HlcoreError as exc:
        return Replayed(drill.name, error=str(exc))
    except Exception as exc:  # a replay that crashes is reported with its drill, not as a traceback
        return Replayed(drill.name, error=f"replay crashed: {type(exc).__name__}: {exc}")
    return reduce_outcome(outcome, hashes)


def reduce_outcome(outcome: Any, hashes: tuple[str, ...]) -> Replayed:
    """A drill's Outcome as comparable lines: the sides' hashes masked, the summary without them."""
    return _reduced(outcome.drill, outcome.entries, outcome.summary()["summary"], hashes)


def _reduced(drill: str, entries: Any, summary: dict[str, Any], hashes: tuple[str, ...]) -> Replayed:
    secrets = frozenset(hashes)
    masked = tuple(_mask(e, secrets) for e in entries)
    kept = {k: v for k, v in summary.items() if k not in ("policy_hash", "fixture_hash")}
    lines = (*(canonical(e) for e in masked), canonical({"summary": kept}))
    verdict = "fail" if summary["failures"] else "pass"
    return Replayed(drill, verdict, tuple(summary["failures"]), lines, masked)


def from_golden(drill: Path, side: Side, code: str) -> Replayed | None:
    """The drill under `side` without replaying it: its committed golden journal, when the drill's
    coverage file vouches that this is the journal of a run under this code, this fixture and exactly
    the side's policy and settings hashes (`replay.selection.vouched_golden`). None: replay it."""
    from replay.drill import fixture_hash
    from replay.selection import Recorded, vouched_golden

    fixture = fixture_hash(drill)
    text = vouched_golden(drill, Recorded(code, side.policy.hash, side.config_hash, fixture))
    return golden_replayed(text, side.policy.hash, side.config_hash, fixture) if text is not None else None


def golden_replayed(journal: str, policy_hash: str, config_hash: str, fixture: str) -> Replayed | None:
    """A passing run's journal text (`Outcome.journal()`, as golden files hold it) reduced as
    `reduce_outcome` reduces the run itself: the same lines (tests/drills check it for every drill).
    None when its summary is not a pass under these policy and fixture hashes. A line with no run of
    64 hex digits holds no hash to mask (the hashes are such runs, and hex digits are never escaped),
    so it is its own comparable line: `canonical` wrote it; only the others are masked and rewritten."""
    hashes = (policy_hash, config_hash)
    try:
        *raw, last = journal.splitlines()
        summary = json.loads(last)["summary"]
        if (summary.get("policy_hash"), summary.get("fixture_hash"), summary.get("verdict")) != \
                (policy_hash, fixture, "pass") or summary.get("failures") != []:
            return None  # a golden is only written for a passing run; this one is not what it claims
        entries = [json.loads(line) for line in raw]
        if not all(_HEX64.fullmatch(h) for h in hashes):  # not hashes: mask every line the slow way
            return _reduced(summary["drill"], entries, summary, hashes)
        secrets = frozenset(hashes)
        masked, lines = [], []
        for line, entry in zip(raw, entries, strict=True):
            if _HEX64.search(line) is None:
                masked.append(entry)
                lines.append(line)
            else:
                masked.append(_mask(entry, secrets))
                lines.append(canonical(masked[-1]))
        kept = {k: v for k, v in summary.items() if k not in ("policy_hash", "fixture_hash")}
        return Replayed(summary["drill"], "pass", (), (*lines, canonical({"summary": kept})), tuple(masked))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


Task = tuple[Path, Path, Path | None, tuple[str, ...]]
_CODE_ROOT = Path(__file__).resolve().parents[1]
_HEX64 = re.compile(r"[0-9a-f]{64}")


def code_hash() -> str:
    """sha256 over the code that replays drills (hlcore/ and replay/ sources): a cached journal
    is only as good as the code that wrote it."""
    digest = hashlib.sha256()
    for package in ("hlcore", "replay"):
        for path in sorted((_CODE_ROOT / package).rglob("*.py")):
            digest.update(path.relative_to(_CODE_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(code: str, side: Side, drill: Path) -> str:
    from replay.drill import fixture_hash

    parts = (code, side.policy.hash, side.config_hash, fixture_hash(drill), drill.name)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _cached(cache_dir: Path | None, key: str) -> Replayed | None:
    path = cache_dir / f"{key}.json" if cache_dir is not None else None
    try:
        doc = json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else None
    except (OSError, ValueError):
        return None  # unreadable: replay it again
    if not isinstance(doc, dict):
        return None
    return Replayed(doc["drill"], doc["verdict"], tuple(doc["failures"]), tuple(doc["lines"]),
                    tuple(doc["entries"]))


def _store(cache_dir: Path | None, key: str, r: Replayed) -> None:
    if cache_dir is None or r.error:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{key}.tmp{os.getpid()}"
        tmp.write_text(json.dumps({"drill": r.drill, "verdict": r.verdict, "failures": list(r.failures),
                                   "lines": list(r.lines), "entries": list(r.entries)}), encoding="utf-8")
        tmp.replace(cache_dir / f"{key}.json")
    except OSError:
        pass  # a cache that cannot be written only costs time


def _collect(futures: dict[Future[Replayed], int], tasks: list[Task], results: dict[int, Replayed],
             on_done: Callable[[int, Replayed], None] | None) -> None:
    """Take each newly finished replay (as soon as it finishes: progress is live)."""
    for f, i in futures.items():
        if f.done() and i not in results and not f.cancelled():
            results[i] = f.result() if f.exception() is None else Replayed(
                tasks[i][0].name, error=f"replay crashed: {f.exception()!r}")
            if on_done is not None:
                on_done(i, results[i])


def run_pool(tasks: list[Task], workers: int, timeout: float,
             on_done: Callable[[int, Replayed], None] | None = None) -> list[Replayed]:
    """Replay every task in `spawn`ed worker processes (a forked child can inherit a lock another
    thread held, and a drill may run threads); a replay that outlives `timeout` seconds is reported
    as an error and its pool is killed, and the unfinished rest starts again in a fresh pool.
    `on_done(task index, result)` is called as each replay finishes (progress)."""
    from replay.suite import _cost_hint

    results: dict[int, Replayed] = {}
    cost = {d: _cost_hint(d) for d in {t[0] for t in tasks}}
    pending = sorted(range(len(tasks)), key=lambda i: -cost[tasks[i][0]])  # the longest first (order only)
    context = multiprocessing.get_context("spawn")
    while pending:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=context)
        futures = {pool.submit(replay_one, *tasks[i]): i for i in pending}
        started: dict[Future[Replayed], float] = {}
        stuck: list[int] = []
        while not stuck:
            running = [f for f in futures if not f.done()]
            if not running:
                break
            # only the unfinished ones: a finished future would end every wait at once (a busy loop)
            wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            now = time.monotonic()
            for f, i in futures.items():
                if f.running():
                    started.setdefault(f, now)
                    if now - started[f] > timeout:
                        stuck.append(i)
            _collect(futures, tasks, results, on_done)
        _collect(futures, tasks, results, on_done)
        for i in stuck:
            results[i] = Replayed(tasks[i][0].name, error=f"replay did not finish within {timeout:g} s")
        if stuck:
            for process in list((getattr(pool, "_processes", None) or {}).values()):  # a stuck worker never returns
                process.kill()
        pool.shutdown(wait=not stuck, cancel_futures=True)
        pending = [i for i in pending if i not in results]
    return [results[i] for i in range(len(tasks))]


def select_drills(base: Side, head: Side, drills: list[Path], report: BehaviourReport) -> list[Path]:
    """The drills the change can affect, by their recorded coverage (replay.selection); the report
    gets why each was replayed or skipped."""
    from replay.drill import fixture_hash
    from replay.selection import Recorded, change_set, select

    cs = change_set(base.policy, base.settings.data, head.policy, head.settings.data)
    report.change = "; ".join(cs.unknown) or cs.describe()
    code = code_hash()
    chosen: list[Path] = []
    for d in drills:
        verdict = select(d, cs, Recorded(code, base.policy.hash, base.config_hash, fixture_hash(d)))
        (report.selected if verdict.replay else report.skipped).append({"drill": d.name, "why": verdict.why})
        if verdict.replay:
            chosen.append(d)
    return chosen


def behaviour_diff(base: Side, head: Side, fixtures: Path, jobs: int | None = None, timeout: float = 300,
                   progress: Callable[[str], None] | None = None,
                   cache_dir: Path | None = None, every: bool = False) -> BehaviourReport:
    """Replay the drills under `fixtures` that the change can affect (`every`: all of them) under
    both sides; report the drills whose journal changed, and which were skipped and why.
    `progress` hears one line per finished replay; base-side journals come from `cache_dir` when
    the same code, base and fixture wrote them before."""
    report = BehaviourReport()
    if (base.policy.hash, base.config_hash) == (head.policy.hash, head.config_hash):
        report.notes.append("policy and settings hash the same on both sides: every drill replays identically, "
                            "none was run")
        return report
    from replay.suite import discover

    drills = discover(fixtures.resolve()) if fixtures.is_dir() else []
    if not drills:
        report.warnings.append(f"{NO_DRILLS}: none found under {fixtures}/*/drill.yaml, so what this change does "
                               "was NOT replayed (hlcore init copies the default drills; or pass --fixtures DIR)")
        return report
    if not every:
        found = len(drills)
        drills = select_drills(base, head, drills, report)
        if progress:
            progress(f"{len(drills)} of {found} drills can be affected by the change (the rest are skipped: "
                     "their recorded coverage does not touch it; --all replays every drill)")
        if not drills:
            report.notes.append(f"none of the {found} drills consulted anything the change touches: none was run")
            return report
    code = code_hash() if cache_dir is not None else ""
    keys = [cache_key(code, base, d) if cache_dir is not None else "" for d in drills]
    known = {i: r for i, r in enumerate(_cached(cache_dir, k) if k else None for k in keys) if r is not None}
    goldens = 0
    heads: dict[int, Replayed] = {}  # head journals that are the goldens (a branch diffed against its base)
    if cache_dir is not None:  # the committed golden journals are a cache too (`--no-cache` ignores both)
        for i, d in enumerate(drills):
            r = None if i in known else from_golden(d, base, code)
            if r is not None:
                known[i], goldens = r, goldens + 1
            r = from_golden(d, head, code)
            if r is not None:
                heads[i] = r
    tasks: list[Task] = []
    slots: list[tuple[int, str]] = []  # (drill index, side) of each task
    for i, d in enumerate(drills):
        for label, side in (("base", base), ("head", head)):
            if (label == "base" and i in known) or (label == "head" and i in heads):
                continue
            tasks.append((d, side.root, side.settings_file, (side.policy.hash, side.config_hash)))
            slots.append((i, label))
    if progress and len(known) > goldens:
        progress(f"{len(known) - goldens} base journals from the cache ({cache_dir})")
    if progress and goldens:
        progress(f"{goldens} base journals are the committed golden journals (recorded under this code and "
                 "exactly the base side's policy and settings)")
    if progress and heads:
        progress(f"{len(heads)} head journals are the committed golden journals (recorded under this code and "
                 "exactly the head side's policy and settings)")
    done = [0]

    def finished(t: int, r: Replayed) -> None:
        done[0] += 1
        if progress:
            i, label = slots[t]
            progress(f"[{done[0]}/{len(tasks)}] {drills[i].name} ({label}): {r.error or r.verdict}")

    replayed = run_pool(tasks, max(1, min(jobs or os.cpu_count() or 1, len(tasks) or 1)), timeout, finished) \
        if tasks else []
    results: list[Replayed] = []
    by_slot = dict(zip(slots, replayed, strict=True))
    for i in range(len(drills)):
        rb = known.get(i) or by_slot[(i, "base")]
        if i not in known:
            _store(cache_dir, keys[i], rb)
        results += [rb, heads.get(i) or by_slot[(i, "head")]]
    for i, d in enumerate(drills):
        rb, rh = results[2 * i], results[2 * i + 1]
        if rb.error or rh.error:
            for side, r in (("base", rb), ("head", rh)):
                if r.error:
                    report.errors.append({"drill": d.name, "side": side, "message": r.error})
            if rb.error != rh.error and not (rb.error and rh.error):
                report.changed.append(DrillChange(d.name, str(d), ("error" if rb.error else rb.verdict,
                                                                   "error" if rh.error else rh.verdict),
                                                  {"line": 0, "base": rb.error or None, "head": rh.error or None}))
            continue
        report.replayed += 1
        change = compare(d, rb, rh)
        if change is not None:
            report.changed.append(change)
    return report

"""Read a folder written by tests/support/timeline.py and print where each worker's time went.

`python -m tests.support.timeline_report <folder> [--top N] [--bucket S]`. Per worker: the session
wall, time inside tests, the gaps between them (xdist hand-off, fixtures torn down between
modules), time before the first and after the last test; inside tests, CPU (own threads and reaped
children), waiting for a CPU (the machine's load) and the rest — blocked or asleep, where the
worker's core is free unless a process it waits for (a server, an unreaped child) uses it. Then
the tests that blocked longest, per file totals, and a strip of 1-character buckets per worker.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def _load(folder: Path) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        rows[path.stem] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def _blocked(row: dict[str, Any]) -> float:
    """Wall not spent on a CPU by the process or its reaped children, nor waiting for one."""
    wall = row["t1"] - row["t0"]
    return max(0.0, wall - row["wait"] - row["cpu"] - row["child"])


def simulate(durations: list[float], workers: int, first_batch: bool) -> list[float]:
    """Each worker's busy time under pytest-xdist 3.8's `load` scheduler, tests in `durations`
    order: with `first_batch` its default (a first batch of a quarter of a worker's share of
    consecutive tests, refilled to half the remaining share when below a quarter), else
    `--maxschedchunk 1` (one test running and one queued per worker)."""
    pending = list(range(len(durations)))
    chunk = max(2, len(durations) // workers // 4) if first_batch else 2
    queues = []
    for _ in range(workers):
        queues.append(pending[:chunk])
        del pending[:chunk]
    busy = [0.0] * workers
    while any(queues):
        w = min((k for k in range(workers) if queues[k]), key=lambda k: busy[k])
        done = queues[w].pop(0)
        busy[w] += durations[done]
        if not pending:
            continue
        if not first_batch:
            queues[w].append(pending.pop(0))
        elif len(queues[w]) < max(2, len(pending) // workers // 4) and not (
                durations[done] >= 0.1 and len(queues[w]) >= 2):
            take = max(2, len(pending) // workers // 2) - len(queues[w])
            queues[w] += pending[:take]
            del pending[:take]
    return busy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--bucket", type=float, default=10.0)
    parser.add_argument("--order", type=Path, help="`pytest --collect-only -q` output: simulate both "
                        "schedules on the recorded times less the run-queue wait (an idle-machine estimate)")
    args = parser.parse_args(argv)
    rows = _load(args.folder)
    if not any(r["kind"] == "test" for rs in rows.values() for r in rs):
        raise SystemExit(f"{args.folder}: no test rows (was the run given -p tests.support.timeline?)")
    main_rows = rows.pop("main", [])
    session = next((r for r in main_rows if r["kind"] == "session"), None)
    t_start = session["t0"] if session else min(r["t0"] for rs in rows.values() for r in rs)
    t_end = session["t1"] if session else max(r["t1"] for rs in rows.values() for r in rs)
    print(f"controller session {t_end - t_start:8.1f} s wall")
    tests: list[tuple[str, dict[str, Any]]] = []
    for worker, wrows in sorted(rows.items()):
        trows = [r for r in wrows if r["kind"] == "test"]
        tests += [(worker, r) for r in trows]
        if not trows:
            continue
        inside = sum(r["t1"] - r["t0"] for r in trows)
        gaps = sum(max(0.0, b["t0"] - a["t1"]) for a, b in itertools.pairwise(trows))
        cpu = sum(r["cpu"] for r in trows)
        child = sum(r["child"] for r in trows)
        wait = sum(r["wait"] for r in trows)
        blocked = sum(_blocked(r) for r in trows)
        print(f"{worker}: {len(trows)} tests; before first {trows[0]['t0'] - t_start:6.1f} s, "
              f"in tests {inside:7.1f} s, gaps {gaps:6.1f} s, after last {t_end - trows[-1]['t1']:6.1f} s")
        print(f"    in tests: cpu {cpu:7.1f} s, children {child:7.1f} s, waiting for a cpu {wait:7.1f} s, "
              f"blocked/asleep {blocked:7.1f} s ({100 * blocked / inside:4.1f} %)")
    print(f"\ntop {args.top} by blocked/asleep time (wall, cpu, children, run-queue wait, blocked):")
    for worker, r in sorted(tests, key=lambda wr: -_blocked(wr[1]))[: args.top]:
        print(f"  {worker} {r['t1'] - r['t0']:7.1f} {r['cpu']:6.1f} {r['child']:6.1f} {r['wait']:6.1f} "
              f"{_blocked(r):6.1f}  {r['id']}")
    print(f"\ntop {args.top} by wall (wall, cpu, children, run-queue wait, blocked):")
    for worker, r in sorted(tests, key=lambda wr: wr[1]["t0"] - wr[1]["t1"])[: args.top]:
        print(f"  {worker} {r['t1'] - r['t0']:7.1f} {r['cpu']:6.1f} {r['child']:6.1f} {r['wait']:6.1f} "
              f"{_blocked(r):6.1f}  {r['id']}")
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for _, r in tests:
        f = files[r["id"].split("::")[0]]
        f[0] += r["t1"] - r["t0"]
        f[1] += r["cpu"] + r["child"]
        f[2] += r["wait"]
        f[3] += _blocked(r)
    print(f"\ntop {args.top} files by wall (wall, cpu+children, run-queue wait, blocked):")
    for name, (wall, cpu, wait, blocked) in sorted(files.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"  {wall:7.1f} {cpu:7.1f} {wait:7.1f} {blocked:7.1f}  {name}")
    print(f"\nstrip, {args.bucket:g} s a character: '#' cpu, '=' cpu-queue wait, '.' blocked, ' ' no test")
    n = int((t_end - t_start) / args.bucket) + 1
    for worker in sorted(rows):
        busy = [[0.0, 0.0, 0.0] for _ in range(n)]
        for r in rows[worker]:
            if r["kind"] != "test" or r["t1"] <= r["t0"]:
                continue
            wall = r["t1"] - r["t0"]
            shares = ((r["cpu"] + r["child"]) / wall, r["wait"] / wall, _blocked(r) / wall)
            t = r["t0"]
            while t < r["t1"]:
                b = int((t - t_start) / args.bucket)
                edge = min(r["t1"], t_start + (b + 1) * args.bucket)
                for k in range(3):
                    busy[min(b, n - 1)][k] += (edge - t) * shares[k]
                t = edge
        line = ""
        for cpu, wait, blocked in busy:
            if cpu + wait + blocked < 0.3 * args.bucket:
                line += " "
            else:
                line += "#=."[max(range(3), key=lambda k: (cpu, wait, blocked)[k])]
        print(f"  {worker} |{line}|")

    if args.order:
        idle = {r["id"]: max(0.0, r["t1"] - r["t0"] - r["wait"]) for _, r in tests}
        order = [line.strip() for line in args.order.read_text().splitlines() if "::" in line]
        durations = [idle.get(name, 0.0) for name in order]
        print(f"\nsimulated, {len(order)} tests, {sum(durations):.1f} s without run-queue wait:")
        for label, first_batch in (("load (default)", True), ("--maxschedchunk 1", False)):
            busy = simulate(durations, len(rows), first_batch)
            print(f"  {label:18s} per worker {' '.join(f'{b:.1f}' for b in busy)} s, makespan {max(busy):.1f} s")


if __name__ == "__main__":
    main()

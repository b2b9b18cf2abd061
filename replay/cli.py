"""`hlcore replay`, `hlcore drill` and `hlcore record`: registered on the main typer app."""

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hlcore.errors import BadInput

if TYPE_CHECKING:  # replay.suite loads the whole runner: only the drill commands import it
    from replay.suite import Coverage, SuiteResult

FORMATS = ("text", "json", "md")


def register(app: typer.Typer) -> None:
    from hlcore.cli import ConfigOpt, PolicyOpt, err, handles_errors, out

    @app.command()
    @handles_errors
    def replay(directory: Annotated[Path, typer.Argument(help="Drill folder holding drill.yaml.")],
               journal: Annotated[Path | None, typer.Option("--journal", help="Write the JSON-lines journal here.")]
               = None,
               format: Annotated[str, typer.Option("--format", help="text, json (the journal) or md.")] = "text",
               keep_db: Annotated[Path | None, typer.Option(
                   "--keep-db", help="Copy each run's final database to DIR/<run>/<app>.db (serve it with "
                   "`hlcore dashboard --db`).")] = None,
               policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
        """Replay one drill on a scripted clock and recorded venues; print its timeline and verdict
        (exit 0 pass, 1 fail, 2 bad drill)."""
        from replay.render import timeline_md, timeline_text
        from replay.runner import replay as run_drill

        if format not in FORMATS:
            raise BadInput(f"--format: expected one of {', '.join(FORMATS)}, got '{format}'")
        outcome = run_drill(directory, policy, config, keep_db=keep_db)
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            journal.write_text(outcome.journal(), encoding="utf-8")
        text = {"json": outcome.journal, "md": lambda: timeline_md(outcome)}.get(format, lambda: timeline_text(outcome))
        sys.stdout.write(text())
        sys.stdout.flush()
        if outcome.verdict != "pass":
            raise typer.Exit(code=1)

    @app.command()
    @handles_errors
    def drill(pattern: Annotated[str | None, typer.Option("-k", help="Only drills whose name contains this "
                                                           "(or matches this glob).")] = None,
              coverage: Annotated[bool, typer.Option("--coverage", help="Report the machine transitions and rule "
                                                     "rows the drills exercised; exit 1 if a transition is not.")]
              = False,
              fixtures: Annotated[Path, typer.Option("--fixtures", help="Folder of drill folders.")] = Path("fixtures"),
              journals: Annotated[Path | None, typer.Option("--journals", help="Write each drill's journal here.")]
              = None,
              jobs: Annotated[int, typer.Option("--jobs", "-j", help="Drills run in parallel (processes); "
                                                "0 = one per CPU.")] = 0,
              format: Annotated[str, typer.Option("--format", help="text, json or md.")] = "text",
              write_golden: Annotated[bool, typer.Option("--write-golden", help="(Re)write each passing drill's "
                                                         "fixtures/<name>/golden.jsonl (review the diff).")]
              = False,
              policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
        """Run every drill under fixtures/ (offline: SQLite, cassettes, scripted clock) and print a summary
        (exit 0 all pass, 1 a drill failed, 2 a drill file is bad)."""
        from hlcore.workspace import open_workspace
        from replay.suite import coverage as measure
        from replay.suite import discover, run_suite, summary_rows

        if format not in FORMATS:
            raise BadInput(f"--format: expected one of {', '.join(FORMATS)}, got '{format}'")
        if not fixtures.is_dir():
            raise BadInput(f"--fixtures: no folder {fixtures} (run from the repository root)")
        dirs = discover(fixtures, pattern)
        if not dirs:
            raise BadInput(f"no drill under {fixtures}" + (f" matching '{pattern}'" if pattern else ""))
        with Progress(TextColumn("[bold]drills"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.description}"), console=err, transient=True,
                      disable=not err.is_terminal) as bar:
            task = bar.add_task("", total=len(dirs))
            started = time.perf_counter()
            suite = run_suite(dirs, policy=policy, config=config, coverage=coverage,
                              jobs=jobs if jobs > 0 else (os.cpu_count() or 1),
                              on_done=lambda r: bar.update(task, advance=1, description=f"{r.name}: {r.verdict}"))
        if journals is not None:
            journals.mkdir(parents=True, exist_ok=True)
            for outcome in suite.outcomes():
                (journals / f"{outcome.drill}.jsonl").write_text(outcome.journal(), encoding="utf-8")
        if write_golden:
            _write_goldens(suite, dirs, policy, config)
        wall_s = time.perf_counter() - started
        rows = summary_rows(suite)
        cov = measure(open_workspace(policy, config).policy, suite.outcomes(), suite.hits) if coverage else None
        if format == "json":
            doc: dict[str, object] = {"drills": rows, "passed": suite.passed, "failed": len(suite.failed),
                                      "errors": len(suite.errors)}
            if cov is not None:
                doc["coverage"] = {"transitions": [{"machine": m, "transition": t, "event": e, "exercised": h}
                                                   for m, t, e, h in cov.transitions],
                                   "rows": [{"row": r, "hits": n} for r, n in cov.rows],
                                   "words": [{"word": w, "drills": d} for w, d in cov.words],
                                   "vocabulary": {o.drill: o.words for o in suite.outcomes()}}
            sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        elif format == "md":
            sys.stdout.write(_markdown(rows, suite, cov))
        else:
            _text(out, rows, suite, cov, wall_s)
        if suite.errors:
            for r in suite.errors:
                for problem in r.problems or ():
                    err.print(f"error: {problem}", markup=False)
            raise typer.Exit(code=2)
        if suite.failed or (cov is not None and (cov.missing_transitions or cov.unused_words)):
            raise typer.Exit(code=1)

    @app.command()
    @handles_errors
    def record(name: Annotated[str, typer.Argument(help="New drill folder name ([a-z0-9_]+).")],
               app_name: Annotated[str, typer.Option("--app", help="copytrader or monitor.")] = "copytrader",
               seconds: Annotated[int, typer.Option("--seconds", help="How long to record.")] = 120,
               fixtures: Annotated[Path, typer.Option("--fixtures", help="Folder of drill folders.")]
               = Path("fixtures"),
               policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
        """Record cassettes from the LIVE venues (copytrader in dry-run: no order is ever sent; or the
        monitor's read-only calls) into fixtures/NAME/cassettes/, with keys, signatures and timestamps
        scrubbed, and write a drill.yaml skeleton to edit. Needs the network and the usual env."""
        from replay.record import record_cassettes

        path = record_cassettes(name, app_name, seconds, fixtures, policy, config)
        out.print(f"recorded {path} (secrets scrubbed); edit {path.parent.parent / 'drill.yaml'}", markup=False)


def _write_goldens(suite: "SuiteResult", dirs: list[Path], policy: Path | None, config: Path | None) -> None:
    """Each passing drill's journal into its golden file, and what it consulted into its coverage
    file (`hlcore diff` selects drills by it); a failing drill's are left as they were."""
    from hlcore.cli import err
    from replay.golden import write_golden
    from replay.selection import record_coverage

    changed = written = 0
    passed = []
    for directory, result in zip(dirs, suite.results, strict=True):
        if result.outcome is None or result.verdict != "pass":
            err.print(f"golden: {directory.name} not written ({result.verdict})", markup=False)
            continue
        written += 1
        changed += write_golden(directory, result.outcome.journal())
        passed.append((directory, result.outcome))
    err.print(f"golden: {written} journals written, {changed} changed", markup=False)
    covered, moved = record_coverage(passed, policy, config)
    err.print(f"coverage: {covered} files written, {moved} changed", markup=False)


def _text(out: Console, rows: list[dict[str, object]], suite: "SuiteResult", cov: "Coverage | None",
          wall_s: float) -> None:
    table = Table(title=None, show_edge=False, pad_edge=False)
    for col, justify in (("drill", "left"), ("runs", "right"), ("verdict", "left"), ("seconds", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        verdict = str(row["verdict"])
        style = {"pass": "green", "fail": "red"}.get(verdict, "magenta")
        table.add_row(escape(str(row["drill"])), str(row["runs"]), f"[{style}]{verdict}[/{style}]",
                      f"{row['seconds']:.2f}")
    out.print(table)
    for r in suite.failed:
        assert r.outcome is not None
        out.print(f"FAIL {r.name}: {r.outcome.failures[0]}", markup=False)
        for more in r.outcome.failures[1:3]:
            out.print(f"     {more}", markup=False)
    total = len(suite.results)
    runs = sum(int(str(row["runs"])) for row in rows)
    out.print(f"{suite.passed}/{total} drills passed ({runs} runs), {len(suite.failed)} failed, "
              f"{len(suite.errors)} bad input, in {wall_s:.1f} s ({suite.seconds:.1f} s of drill time)", markup=False)
    if cov is not None:
        done = sum(1 for *_, hit in cov.transitions if hit)
        hit_rows = sum(1 for _, n in cov.rows if n)
        out.print(f"coverage: transitions {done}/{len(cov.transitions)} exercised; rule rows "
                  f"{hit_rows}/{len(cov.rows)} matched", markup=False)
        for machine, transition, event in cov.missing_transitions:
            out.print(f"  not exercised: {machine}: {transition} on {event}", markup=False)
        if cov.missing_rows:
            out.print("  rule rows never matched: " + ", ".join(cov.missing_rows), markup=False)
        used = len(cov.words) - len(cov.unused_words)
        out.print(f"vocabulary: {used}/{len(cov.words)} words used", markup=False)
        for outcome in suite.outcomes():
            out.print(f"  {outcome.drill}: {', '.join(outcome.words)}", markup=False)
        for word in cov.unused_words:
            out.print(f"  unused word: {word}", markup=False)


def _markdown(rows: list[dict[str, object]], suite: "SuiteResult", cov: "Coverage | None") -> str:
    lines = ["| drill | runs | verdict | seconds |", "|---|---:|---|---:|"]
    for row in rows:
        icon = {"pass": "✅", "fail": "❌"}.get(str(row["verdict"]), "⚠️")
        lines.append(f"| `{row['drill']}` | {row['runs']} | {icon} {row['verdict']} | {row['seconds']:.2f} |")
    lines.append("")
    lines += [f"- ❌ `{r.name}`: {r.outcome.failures[0]}" for r in suite.failed if r.outcome]
    lines.append(f"**{suite.passed}/{len(suite.results)} drills passed** in {suite.seconds:.1f} s")
    if cov is not None:
        done = sum(1 for *_, hit in cov.transitions if hit)
        lines.append(f"\nCoverage: transitions {done}/{len(cov.transitions)}, rule rows "
                     f"{sum(1 for _, n in cov.rows if n)}/{len(cov.rows)}")
        lines += [f"- not exercised: `{m}`: {t} on `{e}`" for m, t, e in cov.missing_transitions]
        lines.append(f"\nVocabulary: {len(cov.words) - len(cov.unused_words)}/{len(cov.words)} words used")
        lines += [f"- `{o.drill}`: " + ", ".join(f"`{w}`" for w in o.words) for o in suite.outcomes()]
        lines += [f"- unused: `{w}`" for w in cov.unused_words]
    return "\n".join(lines) + "\n"

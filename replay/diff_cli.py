"""`hlcore diff` (docs/diff.md): registered on the main typer app by `hlcore_cli`.

The semantic and history halves are core (`hlcore.diff`); the behavioural half replays drills
(`replay.behaviour`), so the command lives above the core with it.
"""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from hlcore.errors import BadInput


def register(app: typer.Typer) -> None:
    from hlcore.cli import err, handles_errors

    @app.command("diff")
    @handles_errors
    def diff_(base: Annotated[str | None, typer.Argument(help="Git revision or directory (default: HEAD).")] = None,
              head: Annotated[str | None, typer.Argument(help="Git revision or directory (default: the working tree)."
                                                         )] = None,
              format: Annotated[str, typer.Option("--format", help="text, md (a pull-request comment) or json.")]
              = "text",
              fail_on: Annotated[str | None, typer.Option("--fail-on", help="Exit 1 on a 'looser' change, or on 'any' "
                                                          "change (CI).")] = None,
              drills: Annotated[bool, typer.Option("--drills/--no-drills", help="Replay drills under both sides "
                                                   "(--no-drills: the semantic diff alone, fast).")] = True,
              every: Annotated[bool, typer.Option("--all", help="Replay every drill, not only those whose recorded "
                                                  "coverage touches the change.")] = False,
              fixtures: Annotated[Path | None, typer.Option("--fixtures", help="Drill folders (default: ./fixtures)."
                                                            )] = None,
              history: Annotated[Path | None, typer.Option("--history", help="A recorded tape of facts (JSONL) to run "
                                                           "through both sides.")] = None,
              jobs: Annotated[int | None, typer.Option("--jobs", help="Drill replays in parallel (default: CPUs).")]
              = None,
              drill_timeout: Annotated[float, typer.Option("--drill-timeout", help="Seconds one drill replay may take "
                                                           "before it is reported as an error.")] = 300,
              cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Where base-side drill journals are "
                                                             "cached (default: $XDG_CACHE_HOME/hlcore/diff).")] = None,
              cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse cached base-side journals.")]
              = True,
              textconv: Annotated[Path | None, typer.Option("--textconv", help="Print one policy file normalised (the "
                                                            "git diff textconv driver) and exit.")] = None) -> None:
        """Semantic and behavioural diff of two policies, each change labelled stricter, looser or neutral;
        replays the drills whose recorded coverage the change touches (--all: every drill)."""
        from contextlib import ExitStack

        from hlcore.diff.history import history_diff
        from hlcore.diff.render import FORMATS, Report, normalised_yaml, render
        from hlcore.diff.semantic import LOOSER, semantic_diff
        from hlcore.diff.sides import load_side
        from replay.behaviour import behaviour_diff

        if textconv is not None:
            from hlcore.yamlsource import read_text

            sys.stdout.write(normalised_yaml(read_text(textconv), str(textconv)))
            return
        if format not in FORMATS:
            raise BadInput(f"--format: expected one of {', '.join(FORMATS)}, got '{format}'")
        if fail_on not in (None, "looser", "any"):
            raise BadInput(f"--fail-on: expected looser or any, got '{fail_on}'")
        with ExitStack() as stack:
            base_side = load_side(base if base is not None else "HEAD", stack)
            head_side = load_side(head, stack)
            report = Report(base_side, head_side, semantic_diff(base_side, head_side))
            if history is not None:
                report.history = history_diff(base_side, head_side, history)
            if drills:
                cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                where = cache_dir or cache_root / "hlcore" / "diff"
                report.behaviour = behaviour_diff(base_side, head_side, fixtures or Path.cwd() / "fixtures", jobs,
                                                  drill_timeout, lambda line: err.print(f"diff: {line}", markup=False),
                                                  where if cache else None, every)
                for warning in report.behaviour.warnings:
                    err.print(f"WARNING: {warning}", markup=False)
            sys.stdout.write(render(report, format))
            sys.stdout.flush()
        if (fail_on == "looser" and any(c.label == LOOSER for c in report.changes)) or (
                fail_on == "any" and report.changed()):
            raise typer.Exit(code=1)

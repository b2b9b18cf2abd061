"""`hlcore history synth|export` and `hlcore backtest`: registered on the main typer app."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated

import typer

from hlcore.errors import BadInput, Problem


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr for long runs (only on a terminal: logs and CI stay clean)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True,
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def register(app: typer.Typer) -> None:
    from hlcore.cli import err, handles_errors

    history_app = typer.Typer(no_args_is_help=True, help="History datasets for the backtest (parquet).")
    app.add_typer(history_app, name="history")
    from backtest.history.copycli import register_copy_history

    register_copy_history(history_app)

    @history_app.command("synth")
    @handles_errors
    def synth_(days: Annotated[int, typer.Option("--days", min=1, help="Days of history.")],
               seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")],
               out: Annotated[Path, typer.Option("--out", help="New folder for the dataset.")],
               wallets: Annotated[int | None, typer.Option("--wallets", min=1, help="Universe size (monitor).")
                                  ] = None,
               app_name: Annotated[str, typer.Option("--app", help="monitor or copytrader.")] = "monitor",
               fills_per_day: Annotated[float, typer.Option("--fills-per-day", min=0.1,
                                                            help="Target fills per day (copytrader).")] = 12.0,
               start: Annotated[str, typer.Option("--start", help="First UTC day.")] = "2026-01-01") -> None:
        """Write a synthetic, realistic history of the monitor or the copy-trader (deterministic per seed)."""
        from backtest.history.dataset import parse_instant

        start_ms = parse_instant(start, "--start")
        if app_name == "copytrader":
            from backtest.history.copysynth import CopySynthSpec, synth_copytrader

            with progress_bar("synth", err.is_terminal) as bar:
                manifest = synth_copytrader(CopySynthSpec(days, seed, start_ms, fills_per_day), out, bar)
            print(f"{out}: {manifest['rows'].get('target_fills', 0)} target fills, "
                  f"{manifest['rows'].get('klines_1m', 0)} minute bars, {len(manifest['days'])} days, "
                  f"content_hash {manifest['content_hash']}")
            return
        if app_name != "monitor":
            raise BadInput(f"--app: expected monitor or copytrader, got '{app_name}'")
        if wallets is None:
            raise BadInput("--wallets: required for the monitor's history")
        from backtest.history.synth import SynthSpec, synth

        spec = SynthSpec(days=days, wallets=wallets, seed=seed, start_ms=start_ms)
        with progress_bar("synth", err.is_terminal) as bar:
            manifest = synth(spec, out, bar)
        print(f"{out}: {manifest['rows'].get('wallet_snapshots', 0)} snapshot rows, {len(manifest['days'])} days, "
              f"{manifest['universe_size']} wallets, content_hash {manifest['content_hash']}")

    @history_app.command("import")
    @handles_errors
    def import_(klines: Annotated[list[Path], typer.Option("--klines", help="Binance 1m kline CSV/zip (repeatable).")],
                node_fills: Annotated[list[Path], typer.Option("--node-fills", help="Hyperliquid node_fills "
                                                               "JSON-lines file (repeatable).")],
                exchange_info: Annotated[Path, typer.Option("--exchange-info", help="Saved GET "
                                                            "/fapi/v1/exchangeInfo body.")],
                wallet: Annotated[str, typer.Option("--wallet", help="The target wallet's address.")],
                out: Annotated[Path, typer.Option("--out", help="New folder for the dataset.")]) -> None:
        """Build a copy-trade history from downloaded Binance klines and Hyperliquid node_fills."""
        from backtest.history.importers import import_copytrade

        for path in [*klines, *node_fills, exchange_info]:
            if not path.is_file():
                raise BadInput(Problem(str(path), "", "no such file"))
        manifest = import_copytrade(klines, node_fills, exchange_info, wallet, out)
        print(f"{out}: {manifest['rows'].get('target_fills', 0)} target fills, "
              f"{manifest['rows'].get('klines_1m', 0)} minute bars, {len(manifest['days'])} days, "
              f"content_hash {manifest['content_hash']}")

    @history_app.command("export")
    @handles_errors
    def export_(out: Annotated[Path, typer.Option("--out", help="New folder for the dataset.")],
                since: Annotated[str | None, typer.Option("--since", help="UTC date or instant (inclusive).")] = None,
                until: Annotated[str | None, typer.Option("--until", help="UTC date or instant (exclusive).")
                                 ] = None,
                db: Annotated[str | None, typer.Option("--db", help="Database URL (default: the app's, from "
                                                       "settings or DATABASE_URL).")] = None,
                config: Annotated[Path | None, typer.Option("--config", help="Settings file.")] = None,
                app_name: Annotated[str, typer.Option("--app", help="monitor or copytrader.")] = "monitor",
                klines: Annotated[list[Path] | None, typer.Option("--klines", help="Copytrader: Binance 1m kline "
                                                                  "CSV/zip (repeatable).")] = None,
                exchange_info: Annotated[Path | None, typer.Option("--exchange-info", help="Copytrader: saved "
                                                                   "/fapi/v1/exchangeInfo body.")] = None) -> None:
        """Export the recorded history from the monitor's or the copy-trader's database (SQLite or PostgreSQL)."""
        from backtest.history.dataset import parse_instant

        if app_name == "copytrader":
            from backtest.history.copycli import export_copy

            export_copy(since, until, out, db, config, klines, exchange_info)
            return
        if app_name != "monitor":
            raise BadInput(f"--app: expected monitor or copytrader, got '{app_name}'")
        if since is None or until is None:
            raise BadInput("--since and --until: required for the monitor's export")
        from backtest.history.export import export
        from hlcore.app import database_url
        from hlcore.workspace import open_workspace

        lo, hi = parse_instant(since, "--since"), parse_instant(until, "--until")
        if hi <= lo:
            raise BadInput(Problem("--until", until, "must be after --since"))
        url = db or database_url(open_workspace(None, config).settings, "monitor")
        manifest = export(url, lo, hi, out)
        print(f"{out}: {manifest['rows'].get('wallet_snapshots', 0)} snapshot rows, {len(manifest['days'])} days, "
              f"content_hash {manifest['content_hash']}")

    @app.command()
    @handles_errors
    def backtest(history: Annotated[Path, typer.Option("--history", help="Dataset folder (manifest.json).")],
                 app_name: Annotated[str, typer.Option("--app", help="Which system's policy: monitor or "
                                                       "copytrader.")] = "monitor",
                 policy: Annotated[str | None, typer.Option("--policy", help="Head policy: directory or git "
                                                            "revision (default: ./, else the packaged one).")] = None,
                 against: Annotated[str | None, typer.Option("--against", help="Base policy: directory or git "
                                                             "revision (default: the head policy without --set)."
                                                             )] = None,
                 set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE settings override on the "
                                                                "head side (repeatable).")] = None,
                 sweep: Annotated[Path | None, typer.Option("--sweep", help="YAML grid over settings keys.")] = None,
                 since: Annotated[str | None, typer.Option("--since", help="UTC date or instant.")] = None,
                 until: Annotated[str | None, typer.Option("--until", help="UTC date or instant (exclusive).")
                                  ] = None,
                 format: Annotated[str, typer.Option("--format", help="text, md, json or html.")] = "text",
                 breakdown: Annotated[str, typer.Option("--breakdown", help="Alerts by asset x day or week.")
                                      ] = "day",
                 out: Annotated[Path | None, typer.Option("--out", help="Write report + metrics.parquet here.")
                                ] = None,
                 jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Sweep workers (joblib loky).")] = 1,
                 scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler "
                                                               "tcp://HOST:PORT for the sweep.")] = None,
                 slippage_bps: Annotated[float, typer.Option("--slippage-bps", min=0.0, help="Copy-trader: fill at "
                                                             "the next minute's open moved this many bps against "
                                                             "the order.")] = 2.0,
                 faults: Annotated[Path | None, typer.Option("--faults", help="Copy-trader: YAML of venue fault "
                                                             "episodes (at, kind, match, for/times).")] = None,
                 exact: Annotated[bool, typer.Option("--exact", help="Monitor: run every job per simulated minute "
                                                     "(default: the fast path over cached features).")] = False
                 ) -> None:
        """Run the monitor's or the copy-trader's policy over recorded history: base -> head deltas, tables."""
        from backtest.run import run_backtest

        if app_name not in ("monitor", "copytrader"):
            raise BadInput(f"--app: expected monitor or copytrader, got '{app_name}'")
        if format not in ("text", "md", "json", "html"):
            raise BadInput(f"--format: expected one of text, md, json, html, got '{format}'")
        if breakdown not in ("day", "week"):
            raise BadInput(f"--breakdown: expected day or week, got '{breakdown}'")
        with ExitStack() as stack, progress_bar("backtest", err.is_terminal) as bar:
            text = run_backtest(stack, history=history, policy=policy, against=against, sets=set_ or [],
                                sweep=sweep, since=since, until=until, fmt=format, breakdown=breakdown, out=out,
                                jobs=jobs, scheduler=scheduler, progress=bar, app=app_name,
                                slippage_bps=slippage_bps, faults=faults, exact=exact)
        sys.stdout.write(text)
        sys.stdout.flush()

"""Command bodies of the copy-trade history: `history fetch-fills` and `history export --app copytrader`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from hlcore.errors import BadInput, Problem

_ADDRESS_LEN = 42  # 0x + 40 hex digits


def check_wallet(wallet: str) -> str:
    """A Hyperliquid address, lowercased; anything else is one clear error."""
    w = wallet.strip().lower()
    if len(w) != _ADDRESS_LEN or not w.startswith("0x") or any(c not in "0123456789abcdef" for c in w[2:]):
        raise BadInput(Problem("--wallet", wallet, "expected a 0x-prefixed 40-hex-digit address"))
    return w


def _files(paths: list[Path]) -> None:
    for path in paths:
        if not path.is_file():
            raise BadInput(Problem(str(path), "", "no such file"))


def register_copy_history(history_app: typer.Typer) -> None:
    from hlcore.cli import handles_errors

    @history_app.command("fetch-fills")
    @handles_errors
    def fetch_fills_(wallet: Annotated[str, typer.Option("--wallet", help="The target wallet's address (public).")],
                     since: Annotated[str, typer.Option("--since", help="UTC date or instant (inclusive).")],
                     out: Annotated[Path, typer.Option("--out", help="New folder for the dataset.")],
                     until: Annotated[str | None, typer.Option("--until", help="UTC date or instant (exclusive; "
                                                               "default now).")] = None,
                     klines: Annotated[list[Path] | None, typer.Option("--klines", help="Binance 1m kline CSV/zip "
                                                                       "(repeatable) to add the venue's bars.")] = None,
                     exchange_info: Annotated[Path | None, typer.Option("--exchange-info", help="Saved GET "
                                                                        "/fapi/v1/exchangeInfo body.")] = None,
                     url: Annotated[str | None, typer.Option("--url", help="Info URL (default: the settings' "
                                                             "ingest.hyperliquid.rest_url).")] = None,
                     config: Annotated[Path | None, typer.Option("--config", help="Settings file.")] = None) -> None:
        """Page a wallet's fills from Hyperliquid's userFillsByTime into a copy-trade history (needs network)."""
        from backtest.history.dataset import parse_instant
        from backtest.history.fetch import fetch_fills, hyperliquid_client
        from hlcore.workspace import open_workspace

        w = check_wallet(wallet)
        lo = parse_instant(since, "--since")
        hi = parse_instant(until, "--until") if until is not None else int(time.time() * 1000)
        if hi <= lo:
            raise BadInput(Problem("--until", until or "now", "must be after --since"))
        _files([*(klines or []), *([exchange_info] if exchange_info else [])])
        client = hyperliquid_client(open_workspace(None, config), url=url)
        manifest, stats = fetch_fills(client, w, lo, hi, out, klines, exchange_info)
        print(f"{out}: {manifest['rows'].get('target_fills', 0)} target fills of {w} in {stats.pages} pages "
              f"({stats.duplicates} boundary duplicates dropped), {manifest['rows'].get('klines_1m', 0)} minute bars, "
              f"content_hash {manifest['content_hash']}")
        if manifest.get("missing"):
            print(f"note: {manifest['missing_note']}")


def export_copy(since: str | None, until: str | None, out: Path, db: str | None, config: Path | None,
                klines: list[Path] | None, exchange_info: Path | None) -> None:
    """`history export --app copytrader`: the database's ingested fills (window optional)."""
    from backtest.history.copyexport import export_copytrader
    from backtest.history.dataset import parse_instant
    from hlcore.app import database_url
    from hlcore.workspace import open_workspace

    lo = parse_instant(since, "--since") if since else None
    hi = parse_instant(until, "--until") if until else None
    if lo is not None and hi is not None and hi <= lo:
        raise BadInput(Problem("--until", until or "", "must be after --since"))
    _files([*(klines or []), *([exchange_info] if exchange_info else [])])
    url = db or database_url(open_workspace(None, config).settings, "copytrader")
    manifest = export_copytrader(url, lo, hi, out, klines, exchange_info)
    print(f"{out}: {manifest['rows'].get('target_fills', 0)} target fills, {manifest['rows'].get('klines_1m', 0)} "
          f"minute bars, {len(manifest['days'])} days, content_hash {manifest['content_hash']}")
    if manifest.get("missing"):
        print(f"note: {manifest['missing_note']}")

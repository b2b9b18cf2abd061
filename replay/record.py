"""`hlcore record NAME`: run the app against the live venues for a while under vcrpy and keep
what they answered as a drill's cassettes. The same scrubber as playback removes API keys,
signatures and timestamps before anything is written. Never run in CI (it needs the network)."""

from __future__ import annotations

import os
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import vcr

from hlcore.config.settings import WALLET_ENV, load_env
from hlcore.engine.clock import SystemClock
from hlcore.errors import BadInput, CheckFailed
from hlcore.workspace import open_workspace
from replay.cassettes import SECRET_HEADERS, SIGNING_FIELDS, scrub_request, scrub_response, scrub_text
from replay.drill import CASSETTE_DIR, DRILL_FILE
from replay.worlds.copytrade import WALLET

SKELETON = """\
# Recorded by `hlcore record {name}` at {start}: edit the runbook, given, timeline and expect.
drill: {name}
runbook: "TODO: the runbook section this drill rehearses"
app: {app}
cassettes: [{cassette}]
clock:
  start: "{start}"
timeline:
  - {{at: 0s, do: boot}}
  - {{at: {seconds}s, do: advance}}
expect:
  - {{at: {seconds}s, process: running}}
"""


def recorder(secrets: tuple[str, ...] = (), wallet: str = "") -> vcr.VCR:
    """vcrpy set to scrub every interaction before it is written; `secrets` (the API key and
    secret) are also redacted verbatim wherever they might be echoed, and the target `wallet` is
    replaced by the drills' placeholder (`replay.worlds.copytrade.WALLET`, what every copy-trader
    drill sets as HYPERLIQUID_TARGET_WALLET), so a cassette never names whom it followed."""

    def request_hook(request: Any) -> Any:
        clean = scrub_request(request)
        clean.uri = placeholder(scrub_text(clean.uri, secrets), wallet)
        if clean.body and (secrets or wallet):
            clean.body = placeholder(scrub_text(clean.body.decode("utf-8", "replace"), secrets), wallet).encode()
        return clean

    def response_hook(response: dict[str, Any]) -> dict[str, Any]:
        clean = scrub_response(response, secrets)
        content = clean.get("body", {}).get("string")
        if wallet and isinstance(content, str):
            clean["body"] = {**clean["body"], "string": placeholder(content, wallet)}
        return clean

    return vcr.VCR(record_mode="all", match_on=("method", "uri", "body"), decode_compressed_response=True,
                   before_record_request=request_hook, before_record_response=response_hook,
                   filter_headers=list(SECRET_HEADERS), filter_query_parameters=list(SIGNING_FIELDS))


def placeholder(text: str, wallet: str) -> str:
    """`text` with the target wallet (any letter case) replaced by the drills' placeholder wallet."""
    if not wallet:
        return text
    return re.sub(re.escape(wallet), WALLET, text, flags=re.IGNORECASE)


def recorded_interactions(cassette: Path) -> int:
    """How many interactions the cassette file holds (0 when vcrpy wrote no file)."""
    import yaml

    if not cassette.is_file():
        return 0
    data = yaml.safe_load(cassette.read_text(encoding="utf-8")) or {}
    return len(data.get("interactions") or []) if isinstance(data, dict) else 0


def record_cassettes(name: str, app: str, seconds: int, fixtures: Path, policy: Path | None,
                     config: Path | None) -> Path:
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise BadInput(f"NAME: expected [a-z0-9_]+, got '{name}'")
    if app not in ("copytrader", "monitor"):
        raise BadInput(f"--app: expected copytrader or monitor, got '{app}'")
    if seconds <= 0:
        raise BadInput("--seconds: expected a positive number")
    from hlcore.jobs.copytrade.service import start
    from hlcore.jobs.monitor.service import start as start_monitor
    from hlcore.ops.baseline import system_wiring

    load_env()
    target = (fixtures / name).resolve()
    cassette = target / CASSETTE_DIR / f"{app}.yaml"
    cassette.parent.mkdir(parents=True, exist_ok=True)
    ws = open_workspace(policy.resolve() if policy else None, config.resolve() if config else None)
    clock = SystemClock()
    wiring = system_wiring(clock)
    start_ms = clock.now_ms()
    cwd = Path.cwd()
    secrets = tuple(os.environ.get(k, "") for k in ("BINANCE_API_KEY", "BINANCE_API_SECRET"))
    wallet = os.environ.get(WALLET_ENV, "")
    with tempfile.TemporaryDirectory(prefix="hlcore-record-") as tmp, \
            recorder(secrets, wallet).use_cassette(str(cassette)):
        os.chdir(tmp)
        # a database it creates itself, whatever db_path/db_url say (an absolute path would be the
        # operator's live database): recording never reads or marks the operator's fills
        own_db = f"sqlite:///{Path(tmp).resolve() / 'record.db'}"
        try:
            if app == "copytrader":
                ctx, _jobs, scheduler, _loop, _code = start(ws, "dry-run", wiring, db_url=own_db,
                                                            allow_create_db=True)  # dry-run: no order, ever
            else:
                ctx, _jobs, scheduler = start_monitor(ws, wiring, db_url=own_db, allow_create_db=True)
            try:
                scheduler.run_until(start_ms + seconds * 1000,
                                    lambda ts: time.sleep(max(0.0, (ts - clock.now_ms()) / 1000)))
            finally:
                ctx.close()
        finally:
            os.chdir(cwd)
    if recorded_interactions(cassette) == 0:  # offline, or nothing answered: say so, write no skeleton
        for empty in (cassette.parent, target):  # leave no empty drill folder behind
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
        raise CheckFailed(f"nothing recorded in {seconds} s: no venue answered (offline? wrong URL in the "
                          f"settings?); {cassette} was not written")
    drill_file = target / DRILL_FILE
    if not drill_file.exists():
        stamp = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{start_ms % 1000:03d}Z"
        drill_file.write_text(SKELETON.format(name=name, app=app, cassette=cassette.name, start=stamp,
                                              seconds=seconds), encoding="utf-8")
    return cassette

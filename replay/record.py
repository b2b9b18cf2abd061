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

from hlcore.config.settings import load_env
from hlcore.engine.clock import SystemClock
from hlcore.errors import BadInput
from hlcore.workspace import open_workspace
from replay.cassettes import SECRET_HEADERS, SIGNING_FIELDS, scrub_request, scrub_response, scrub_text
from replay.drill import CASSETTE_DIR, DRILL_FILE

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


def recorder(secrets: tuple[str, ...] = ()) -> vcr.VCR:
    """vcrpy set to scrub every interaction before it is written; `secrets` (the API key and
    secret) are also redacted verbatim wherever they might be echoed."""

    def request_hook(request: Any) -> Any:
        clean = scrub_request(request)
        clean.uri = scrub_text(clean.uri, secrets)
        if clean.body and secrets:
            clean.body = scrub_text(clean.body.decode("utf-8", "replace"), secrets).encode()
        return clean

    return vcr.VCR(record_mode="all", match_on=("method", "uri", "body"), decode_compressed_response=True,
                   before_record_request=request_hook,
                   before_record_response=lambda response: scrub_response(response, secrets),
                   filter_headers=list(SECRET_HEADERS), filter_query_parameters=list(SIGNING_FIELDS))


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
    with tempfile.TemporaryDirectory(prefix="hlcore-record-") as tmp, recorder(secrets).use_cassette(str(cassette)):
        os.chdir(tmp)  # a throwaway database: recording never touches the operator's
        scratch = f"sqlite:///{Path(tmp).resolve() / 'record.db'}"  # db_path is relative to the config file
        try:
            if app == "copytrader":
                ctx, _jobs, scheduler, _loop, _code = start(ws, "dry-run", wiring, db_url=scratch,
                                                            allow_create_db=True)  # dry-run: no order, ever
            else:
                ctx, _jobs, scheduler = start_monitor(ws, wiring, db_url=scratch, allow_create_db=True)
            try:
                scheduler.run_until(start_ms + seconds * 1000,
                                    lambda ts: time.sleep(max(0.0, (ts - clock.now_ms()) / 1000)))
            finally:
                ctx.close()
        finally:
            os.chdir(cwd)
    drill_file = target / DRILL_FILE
    if not drill_file.exists():
        stamp = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{start_ms % 1000:03d}Z"
        drill_file.write_text(SKELETON.format(name=name, app=app, cassette=cassette.name, start=stamp,
                                              seconds=seconds), encoding="utf-8")
    return cassette

"""Copy-trader ingest vocabulary (issue 11 §2, issue 18): what the ingest skipped and why, as
`ingest_skips` stored it. Raw venue field types need no word of their own: the `fills` given and
step serve `time`/`tid`/`oid` exactly as the drill writes them (a digit string stays a string)."""

from __future__ import annotations

from typing import Any

from hlcore.storage.ingest_skips import IngestSkips
from replay.drill import Expectation
from replay.registry import check

APP = ("copytrader",)


@check("skips", {"skips": {"type": "dict", "required": True,
                           "keysrules": {"type": "string", "regex": r"^[a-z][a-z0-9_]*$"},
                           "valuesrules": {"type": "integer", "min": 0}}},
       "Venue items the ingest skipped, stored once each in `ingest_skips`: exactly these counts per reason "
       "(e.g. `{ingest_unmapped_symbol: 1}`; `{}`: none; a reason not listed must have none).", apps=APP,
       example="{at: 6s, skips: {ingest_unmapped_symbol: 1}}")
def _skips(player: Any, exp: Expectation) -> list[str]:
    got = IngestSkips(player.db).counts_since(0)
    want = {str(k): int(v) for k, v in exp.spec["skips"].items()}
    reasons = sorted(set(got) | set(want))
    return [f"ingest_skips {reason}: {got.get(reason, 0)}, expected {want.get(reason, 0)}"
            for reason in reasons if got.get(reason, 0) != want.get(reason, 0)]

"""Readable forms of a drill outcome: a text timeline for the terminal and Markdown for a
pull request or a runbook page. The journal (JSON lines) stays the source of truth."""

from __future__ import annotations

from typing import Any

from replay.runner import Outcome


def _line(e: dict[str, Any], last: dict[str, tuple[Any, Any]] | None = None) -> str | None:
    """One readable line, or None. `last` (instance -> (state, reason)) lets a reason-only change
    (an audit row whose state did not move) show, while repeated identical rows stay hidden."""
    kind = e["kind"]
    if kind in ("transition", "audit") and last is not None and e.get("instance"):
        before = last.get(e["instance"])
        last[e["instance"]] = (e["to"], e["reason"])
        if kind == "audit" and before != (e["to"], e["reason"]) and e["event"] != "seeded":
            kind = "transition"
    if kind == "transition" and e["event"] != "seeded":
        inst = e["instance"] or e["machine"] or e.get("category") or "-"  # an ops row may name no machine
        return f"{inst:<22} {e['from'] or '-'} -> {e['to']}  {e['reason'] or ''}".rstrip()
    if kind == "process":
        return f"{'process':<22} {e['event']}" + (f" ({e['detail']})" if e.get("detail") else "")
    if kind == "operator":
        return f"{'operator':<22} $ hlcore {e['command']}  -> exit {e['exit']}"
    if kind == "step" and e["do"] not in ("boot", "advance", "restart", "operator"):
        args = " ".join(f"{k}={v}" for k, v in sorted((e.get("args") or {}).items()))
        repeat = f" (repeat {e['repeat']})" if e.get("repeat") else ""
        return f"{'world':<22} {e['do']} {args}".rstrip() + repeat
    if kind == "row" and e["table"] == "alerts":
        row = e["row"]
        what = row.get("alert_type") or row.get("type") or "alert"
        state = row.get("delivery_status") or row.get("status") or ""
        why = row.get("suppressed_reason") or row.get("suppression_reason") or ""
        return f"{'alert':<22} {what} {row.get('asset') or ''} {state} {why}".rstrip()
    return None


def _calls(outcome: Outcome, run: str) -> str:
    calls: dict[str, int] = {}
    for e in outcome.entries:
        if e["kind"] == "venue_call" and e["run"] == run:
            key = f"{e['venue']} {e['method']} {e['path']}" + (f" {e['op']}" if e["op"] else "")
            calls[key] = calls.get(key, 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in sorted(calls.items())) or "none"


def runs(outcome: Outcome) -> list[str]:
    seen: list[str] = []
    for e in outcome.entries:
        if e["run"] not in seen:
            seen.append(e["run"])
    return seen


def timeline_text(outcome: Outcome) -> str:
    """Time, machine, from -> to, reason; process, operator and world events; the verdict."""
    lines = [f"drill {outcome.drill} ({outcome.runbook})"]
    for run in runs(outcome):
        lines.append(f"-- run {run}")
        last: dict[str, tuple[Any, Any]] = {}
        for e in outcome.entries:
            if e["run"] == run and (text := _line(e, last)) is not None:
                lines.append(f"  {e['t']:>10}  {text}")
        lines.append(f"  venue calls: {_calls(outcome, run)}")
    lines += [f"FAIL {failure}" for failure in outcome.failures]
    lines.append(f"verdict: {outcome.verdict}")
    return "\n".join(lines) + "\n"


def timeline_md(outcome: Outcome) -> str:
    icon = "✅" if outcome.verdict == "pass" else "❌"
    out = [f"### {icon} drill `{outcome.drill}`", "", f"_{outcome.runbook}_", ""]
    for run in runs(outcome):
        out += [f"**run `{run}`**", "", "| time | what | change |", "|---:|---|---|"]
        last: dict[str, tuple[Any, Any]] = {}
        for e in outcome.entries:
            if e["run"] == run and (text := _line(e, last)) is not None:
                head, _, rest = text.partition(" ")
                out.append(f"| {e['t']} | {head} | {rest.strip().replace('|', '/')} |")
        out += ["", f"venue calls: {_calls(outcome, run)}", ""]
    if outcome.failures:
        out += ["**Failures**", ""] + [f"- `{f}`" for f in outcome.failures] + [""]
    out.append(f"verdict: **{outcome.verdict}** · policy `{outcome.policy_hash[:12]}` · "
               f"fixture `{outcome.fixture_hash[:12]}`")
    return "\n".join(out) + "\n"

"""Print a diff report as text (terminal), Markdown (a pull-request comment) or JSON (tools)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from hlcore.diff.behaviour import BehaviourReport, DrillChange
from hlcore.diff.history import HistoryReport
from hlcore.diff.semantic import LABELS, LOOSER, STRICTER, Change, canonical, counts
from hlcore.diff.sides import Side
from hlcore.errors import BadInput
from hlcore.yamlsource import parse_yaml

FORMATS = ("text", "md", "json")
_MARK = {LOOSER: "⚠️ looser", STRICTER: "🛡️ stricter"}


@dataclass
class Report:
    base: Side
    head: Side
    changes: list[Change]
    behaviour: BehaviourReport | None = None
    history: HistoryReport | None = None

    def ordered(self) -> list[Change]:
        """Looser first: that is what a reviewer must look at."""
        return sorted(self.changes, key=lambda c: LABELS.index(c.label))

    def changed(self) -> bool:
        return bool(self.changes) or bool(self.behaviour and self.behaviour.changed)

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.describe(), "head": self.head.describe(), "summary": counts(self.changes),
                "changes": [c.to_dict() for c in self.ordered()],
                "drills": self.behaviour.to_dict() if self.behaviour else None,
                "history": self.history.to_dict() if self.history else None}


def show(value: Any, limit: int = 100) -> str:
    text = "-" if value is None else value if isinstance(value, str) else canonical(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary_line(report: Report) -> str:
    n = counts(report.changes)
    total = len(report.changes)
    return f"{total} change{'s' if total != 1 else ''} ({n[LOOSER]} looser, {n[STRICTER]} stricter, " \
           f"{n['neutral']} neutral)"


def _drills_line(b: BehaviourReport) -> str:
    if b.no_drills:
        return "NO DRILLS FOUND: behaviour not checked"
    skipped = f", {len(b.skipped)} skipped (their recorded coverage does not touch the change)" if b.skipped else ""
    return f"{b.replayed} drill{'s' if b.replayed != 1 else ''} replayed under both sides{skipped}, " \
           f"{len(b.changed)} outcome{'s' if len(b.changed) != 1 else ''} changed"


def _selection_lines(b: BehaviourReport) -> list[str]:
    """Why each drill was replayed or skipped (the reviewer can check the selection)."""
    if not b.change:
        return []
    out = [f"selected against: {b.change}"]
    out += [f"replayed {s['drill']}: {s['why']}" for s in b.selected]
    out += [f"skipped {s['drill']}: {s['why']}" for s in b.skipped]
    return out


def _side(s: Side) -> str:
    return f"{s.label} (policy {s.policy.hash[:12]}, config {s.config_hash[:12]})"


def _duration(ms: int) -> str:
    s = ms // 1000
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _change_detail(c: Change) -> str:
    extra = f"; read at {', '.join(c.refs)}" if c.refs else ""
    where = f" [{c.where}]" if c.where else ""
    return f"{c.why}{where}{extra}"


def _change_head(c: Change) -> str:
    if c.action == "changed" and (c.before is not None or c.after is not None):
        return f"{c.area} {c.subject}: {show(c.before)} -> {show(c.after)}"
    return f"{c.area} {c.subject} {c.action}"


def render_text(r: Report) -> str:
    out = [f"hlcore diff  base: {_side(r.base)}", f"             head: {_side(r.head)}", ""]
    out.append(f"Policy and settings: {_summary_line(r)}")
    for c in r.ordered():
        out.append(f"  {c.label:<9} {_change_head(c)}")
        out.append(f"  {'':<9}   {_change_detail(c)}")
    if r.behaviour is not None:
        out += ["", f"Drills: {_drills_line(r.behaviour)}"]
        for d in r.behaviour.changed:
            out += _drill_text(d)
        for e in r.behaviour.errors:
            out.append(f"  could not replay {e['drill']} under {e['side']}: {e['message']}")
        out += [f"  note: {n}" for n in r.behaviour.notes]
        out += [f"  WARNING: {w}" for w in r.behaviour.warnings]
        out += [f"  {line}" for line in _selection_lines(r.behaviour)]
    if r.history is not None:
        out += ["", *_history_text(r.history)]
    return "\n".join(out) + "\n"


def _drill_text(d: DrillChange) -> list[str]:
    out = [f"  {d.drill} ({d.path}): verdict {d.verdict[0]} -> {d.verdict[1]}"]
    f = d.first_difference
    out.append(f"    first difference, journal line {f['line']}:")
    out.append(f"      base: {f['base'] if f['base'] is not None else '(ends)'}")
    out.append(f"      head: {f['head'] if f['head'] is not None else '(ends)'}")
    for s in d.states:
        out.append(f"    final {s['run']}/{s['instance']}: {_state(s['base'])} -> {_state(s['head'])}")
    for k, (b, h) in d.alerts.items():
        out.append(f"    alerts {k}: {b} -> {h}")
    if not d.alerts:
        out.append("    alerts: none on either side")
    for side, failures in (("base", d.failures[0]), ("head", d.failures[1])):
        out += [f"    {side} FAIL {x}" for x in failures]
    return out


def _state(pair: list[Any]) -> str:
    state, reason = pair
    return "(no transition)" if state is None else f"{state}/{reason}" if reason else str(state)


def _history_text(h: HistoryReport) -> list[str]:
    out = [f"History: {h.file}, {h.facts} facts over {_duration(h.span_ms)}"]
    rows = h.state_rows()
    out.append("  time in state (base -> head):" if rows else "  time in state: unchanged")
    out += [f"    {m}.{s}: {_duration(b)} -> {_duration(a)} ({_signed_duration(a - b)})" for m, s, b, a in rows]
    for what, title in (("effects", "effects (alerts, gates, verdicts)"), ("transitions", "transitions")):
        rows2 = h.count_rows(what)
        out.append(f"  {title} (base -> head):" if rows2 else f"  {title}: unchanged")
        out += [f"    {k}: {b} -> {a} ({a - b:+d})" for k, b, a in rows2]
    return out


def _signed_duration(ms: int) -> str:
    return ("+" if ms >= 0 else "-") + _duration(abs(ms))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_md(r: Report) -> str:
    n = counts(r.changes)
    out = [f"### hlcore diff: `{r.base.label}` → `{r.head.label}`", ""]
    parts = [f"**{n[LOOSER]} looser**" if n[LOOSER] else "0 looser", f"{n[STRICTER]} stricter",
             f"{n['neutral']} neutral"]
    if r.behaviour is not None:
        parts.append(_drills_line(r.behaviour))
    out += [" · ".join(parts), ""]
    if r.changes:
        out += ["| Safety | Change | Before | After | Why | Where |", "|---|---|---|---|---|---|"]
        for c in r.ordered():
            why = c.why + (f"; read at {', '.join(c.refs)}" if c.refs else "")
            out.append(f"| {_MARK.get(c.label, c.label)} | {c.area} `{_cell(c.subject)}` {c.action} | "
                       f"`{_cell(show(c.before, 60))}` | `{_cell(show(c.after, 60))}` | {_cell(why)} | "
                       f"`{_cell(c.where or '-')}` |")
    else:
        out.append("No semantic change: the policies are the same after normalisation.")
    if r.behaviour is not None:
        out += ["", "#### Drills", ""]
        out += [f"> **WARNING**: {_cell(w)}" for w in r.behaviour.warnings]
        if not r.behaviour.changed and not r.behaviour.no_drills:
            out.append("No drill outcome changed.")
        for d in r.behaviour.changed:
            out += ["<details>", f"<summary><b>{d.drill}</b>: verdict {d.verdict[0]} → {d.verdict[1]}</summary>",
                    "", "```", *_drill_text(d)[1:], "```", "</details>", ""]
        out += [f"- could not replay `{e['drill']}` under {e['side']}: {_cell(e['message'])}"
                for e in r.behaviour.errors]
        out += [f"- note: {x}" for x in r.behaviour.notes]
        lines = _selection_lines(r.behaviour)
        if lines:
            out += ["", "<details>", f"<summary>Drill selection: {len(r.behaviour.selected)} replayed, "
                    f"{len(r.behaviour.skipped)} skipped</summary>", "", *[f"- {_cell(x)}" for x in lines],
                    "</details>"]
    if r.history is not None:
        out += ["", "#### History", "", "```", *_history_text(r.history), "```"]
    out += ["", f"<sub>base {_side(r.base)} · head {_side(r.head)}</sub>"]
    return "\n".join(out) + "\n"


def render(r: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(r.to_dict(), indent=2, sort_keys=False, ensure_ascii=False, default=str) + "\n"
    if fmt == "md":
        return render_md(r)
    if fmt == "text":
        return render_text(r)
    raise BadInput(f"--format: expected one of {', '.join(FORMATS)}, got '{fmt}'")


def normalised_yaml(text: str, name: str) -> str:
    """The canonical form of one policy file for `git diff` (textconv): keys sorted, anchors
    expanded, comments and layout gone. Text that is not valid YAML is shown as is, so a broken
    revision still diffs."""
    try:
        data = parse_yaml(text, name).data
    except BadInput as exc:
        return f"# hlcore: not valid YAML ({exc}); shown as is\n{text}"
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, allow_unicode=True, width=100)

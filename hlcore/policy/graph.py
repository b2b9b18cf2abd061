"""Render a machine as Mermaid or Graphviz dot, generated from the policy so docs cannot drift."""

from __future__ import annotations

from hlcore.policy.model import ANY_STATE, MachineDef


def _edges(m: MachineDef) -> list[tuple[str, str, str]]:
    edges: list[tuple[str, str, str]] = []
    for t in m.transitions:
        sources = list(m.states) if ANY_STATE in t.sources else list(t.sources)
        label = t.event
        if t.guards:
            label += f" [{', '.join(t.guards)}]"
        if isinstance(t.reason, str):
            label += f" / {t.reason}"
        if m.events[t.event].operator:
            label += " (operator)"
        for s in sources:
            edge = (s, t.dest, label)
            if edge not in edges:
                edges.append(edge)
    return edges


def _mermaid_id(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def mermaid(m: MachineDef) -> str:
    lines = ["stateDiagram-v2", f"    %% machine {m.name} ({m.file})"]
    for name, s in m.states.items():
        notes = []
        if s.allows:
            notes.append("allows: " + ", ".join(s.allows))
        if s.halt:
            notes.append("halt")
        if s.final:
            notes.append("final")
        sid = _mermaid_id(name)
        lines.append(f"    state \"{name}\" as {sid}" if sid != name else f"    state {name}")
        if notes:
            lines.append(f"    note right of {sid}: {'; '.join(notes)}")
    lines.append(f"    [*] --> {_mermaid_id(m.initial)}")
    for src, dest, label in _edges(m):
        lines.append(f"    {_mermaid_id(src)} --> {_mermaid_id(dest)}: {label}")
    for name, s in m.states.items():
        if s.final:
            lines.append(f"    {_mermaid_id(name)} --> [*]")
    return "\n".join(lines) + "\n"


def dot(m: MachineDef) -> str:
    lines = [f"digraph \"{m.name}\" {{", "    rankdir=LR;", "    __start [shape=point];"]
    for name, s in m.states.items():
        shape = "doubleoctagon" if s.halt else ("doublecircle" if s.final else "ellipse")
        tip = ", ".join(s.allows) or "nothing"
        lines.append(f"    \"{name}\" [shape={shape}, tooltip=\"allows: {tip}\"];")
    lines.append(f"    __start -> \"{m.initial}\";")
    for src, dest, label in _edges(m):
        lines.append(f"    \"{src}\" -> \"{dest}\" [label=\"{label}\"];")
    lines.append("}")
    return "\n".join(lines) + "\n"


RENDERERS = {"mermaid": mermaid, "dot": dot}

"""Compile the rule tables for one fact kind into one straight-line Python function.

Why: a healthy system evaluates a dozen rows per fact and changes nothing; walking closures
costs more than the decision. The generated code is built only from the *validated* policy:
every literal goes through `repr`, every name is an identifier made here, and any operand shape
this module does not inline (tallies, arithmetic, allowlists, template lookups) is called as the
closure `conditions.Compiler` built for it — one semantics, two speeds. A differential test
checks compiled and closure evaluation agree.

Null semantics match `conditions.py`: an ordered comparison with a null side is false.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any

from hlcore.policy.conditions import OPERATORS, UNITS_MS, Compiler, parse_duration
from hlcore.policy.model import Policy

_ORDERED = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_SCALAR = (bool, int, float, str, type(None))


class _Gen:
    def __init__(self, policy: Policy, compiler: Compiler, config: Any, singletons: Mapping[str, Any]):
        self.policy = policy
        self.compiler = compiler
        self.config = config
        self.singletons = singletons
        self.ns: dict[str, Any] = {}
        self.counter = 0

    def const(self, value: Any) -> str:
        if isinstance(value, _SCALAR) and not (isinstance(value, float) and value != value):
            return repr(value)
        name = f"C{len(self.ns)}"
        self.ns[name] = value
        return name

    def fresh(self) -> str:
        self.counter += 1
        return f"_v{self.counter}"

    def closure(self, fn: Callable[..., Any]) -> str:
        name = f"K{len(self.ns)}"
        self.ns[name] = fn
        return f"{name}(c)"

    def inst(self, machine: str) -> str:
        name = f"I_{machine}"
        self.ns[name] = self.singletons[machine]
        return name

    # ---------------------------------------------------------------- operands
    def operand(self, node: Any, target: str | None) -> str:
        """Python expression for an operand; `target` is the rule's target machine (for `var`)."""
        if not isinstance(node, Mapping):
            return self.const(list(node) if isinstance(node, list) else node)
        if "fact" in node:
            return f"F.get({node['fact']!r})"
        if "config" in node:
            value = self.config.get(node["config"])
            if "unit" in node and value is not None:
                value = value * UNITS_MS[node["unit"]]
            return self.const(value)
        if "now" in node:
            return "now"
        if "duration" in node:
            return repr(parse_duration(node["duration"]))
        if "list" in node:
            return self.const(frozenset(self.policy.lists[node["list"]]))
        for attr, kind in (("state", "state"), ("reason", "reason"), ("since", "since")):
            if kind in node and node[kind] in self.singletons:
                return f"{self.inst(node[kind])}.{attr}"
            if kind in node and node[kind] == target:
                return f"(S.{attr} if S is not None else None)"
        if "var" in node:
            owner = node.get("of") or target
            if owner in self.singletons:
                return f"{self.inst(owner)}.vars.get({node['var']!r})"
            if owner == target and "of" not in node:
                return f"(S.vars.get({node['var']!r}) if S is not None else None)"
        return self.closure(self.compiler.operand(node))

    # ---------------------------------------------------------------- predicates
    def predicate(self, node: Mapping[str, Any], target: str | None) -> str:
        if "all" in node:
            return "(" + " and ".join(self.predicate(n, target) for n in node["all"]) + ")"
        if "any" in node:
            return "(" + " or ".join(self.predicate(n, target) for n in node["any"]) + ")"
        if "not" in node:
            return f"(not {self.predicate(node['not'], target)})"
        if "always" in node:
            return "True"
        if "guard" in node:
            return self.predicate(self.policy.guards[node["guard"]], None)
        if "allowlisted" in node or "band" in node:
            return f"bool({self.closure(self.compiler.predicate(node))})"
        subject = self.operand({k: v for k, v in node.items() if k not in OPERATORS}, target)
        var = self.fresh()
        tests = []
        first = True
        for op in OPERATORS:
            if op not in node:
                continue
            v = f"({var} := {subject})" if first else var
            first = False
            raw = node[op]
            if op == "is_null":
                tests.append(f"(({v} is None) == {bool(raw)!r})")
            elif op in ("in", "not_in"):
                if isinstance(raw, list) and all(isinstance(x, _SCALAR) for x in raw):
                    members = self.const(frozenset(raw))
                elif isinstance(raw, list):
                    parts = ", ".join(self.operand(x, target) for x in raw)
                    members = f"{{{parts}}}"
                else:
                    members = self.operand(raw, target)
                word = "in" if op == "in" else "not in"
                tests.append(f"({v} is not None and {var} {word} {members})")
            elif op in ("eq", "ne"):
                tests.append(f"({v} {'==' if op == 'eq' else '!='} {self.operand(raw, target)})")
            else:
                rhs = self.operand(raw, target)
                if rhs == "None":
                    tests.append(f"(({v}) is None and False)")
                elif _is_literal(rhs):
                    tests.append(f"({v} is not None and {var} {_ORDERED[op]} {rhs})")
                else:
                    r = self.fresh()
                    tests.append(f"({v} is not None and ({r} := {rhs}) is not None and {var} {_ORDERED[op]} {r})")
        return "(" + " and ".join(tests) + ")"


def _is_literal(expr: str) -> bool:
    try:
        float(expr)
    except ValueError:
        return False
    return True


_CODE: dict[tuple[str, str], CodeType] = {}  # generated source -> compiled code object


def compile_kind(kind: str, tables: list[tuple[Any, list[tuple[Any, Any]]]], policy: Policy, compiler: Compiler,
                 config: Any, singletons: Mapping[str, Any],
                 holds: Mapping[tuple[str, str], frozenset[str]],
                 no_exit: Mapping[tuple[str, str], frozenset[str]]) -> Callable[..., None]:
    """One function `run(E, c, F, now, pend, queue)` evaluating every table that reads `kind`.

    `tables` is [(table_def, [(row_def, action), …]), …] in evaluation order. `holds` maps
    (machine, event) to the states where that event can only stay put, `no_exit` to the states
    where it does nothing at all: a row whose only action is such an event (with the reason
    unchanged, for a hold) is settled inline without a call.
    """
    gen = _Gen(policy, compiler, config, singletons)
    lines = ["def run(E, c, F, now, pend, queue):", "    S = None"]
    for t_index, (table, rows) in enumerate(tables):
        first = table.match == "first"
        indent = "    "
        if first:
            lines.append("    while True:")
            indent = "        "
        current: object = object()
        for r_index, (row, action) in enumerate(rows):
            target = action.machine
            if target != current:
                if target is None:
                    lines.append(f"{indent}S = None")
                elif target in singletons:
                    lines.append(f"{indent}S = {gen.inst(target)}")
                else:
                    lines.append(f"{indent}S = E._resolve({target!r}, c)")
                lines.append(f"{indent}c.self_inst = S")
                current = target
            act = f"A{t_index}_{r_index}"
            gen.ns[act] = action
            cond = gen.predicate(row.when, target)
            lines.append(f"{indent}if {cond}:  # {table.name}.{row.id}")
            lines.append(f"{indent}    if E.hits is not None: E.hits[{table.name + '.' + row.id!r}] += 1")
            event_only = (action.event is not None and target is not None and row.then.get("reason") is not None
                          and not (action.sets or action.records or action.effects or action.emits))
            if event_only:
                reason = gen.operand(row.then["reason"], target) if isinstance(row.then["reason"], Mapping) \
                    else repr(row.then["reason"])
                still = gen.const(holds.get((target, action.event), frozenset()))
                inert = gen.const(no_exit.get((target, action.event), frozenset()))
                lines.append(f"{indent}    _r = {reason}")
                lines.append(f"{indent}    if S is not None and S.state not in {inert} and "
                             f"not (S.state in {still} and S.reason == _r):")
                lines.append(f"{indent}        E._dispatch(S, {action.event!r}, _r, {action.severity!r}, c, pend)")
            else:
                lines.append(f"{indent}    E._apply({act}, c, pend, queue)")
            if first:
                lines.append(f"{indent}    break")
        if first:
            lines.append("        break")
    source = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = dict(gen.ns)
    code = _CODE.get((kind, source))
    if code is None:  # a process boots the same policy many times (drills, operator commands)
        code = _CODE[(kind, source)] = compile(source, f"<policy:{kind}>", "exec")
        while len(_CODE) > 256:
            _CODE.pop(next(iter(_CODE)))
    exec(code, namespace)  # the source above is generated from the validated policy only
    run = namespace["run"]
    run.source = source  # type: ignore[attr-defined]
    return run


def compile_predicate(node: Mapping[str, Any], target: str | None, policy: Policy, compiler: Compiler, config: Any,
                      singletons: Mapping[str, Any]) -> Callable[..., bool]:
    """One condition as `pred(E, c, F, now, S)`; used to check the compiled form against the closures."""
    gen = _Gen(policy, compiler, config, singletons)
    source = f"def pred(E, c, F, now, S):\n    return bool({gen.predicate(node, target)})\n"
    namespace: dict[str, Any] = dict(gen.ns)
    exec(compile(source, "<policy:predicate>", "exec"), namespace)  # generated from validated data only
    return namespace["pred"]

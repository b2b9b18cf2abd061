"""The interpreter: facts → rule tables → events → machines (`transitions`) → effects + audit.

`Engine.observe(kind, fields)` is the one entry point jobs, operators and drills use. It reads
time only from the injected clock, and iterates everything in policy order, so the same policy,
state and facts give the same `Decision`, byte for byte.

Fast path: most facts change nothing (a healthy system stays healthy). Rule conditions are
closures with config values folded in, and an event whose only possible outcome is "stay where
you are, same reason" is settled without entering the `transitions` machinery at all.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from transitions import Machine

from hlcore import consulted
from hlcore.engine import trace
from hlcore.engine.clock import Clock
from hlcore.engine.codegen import compile_kind
from hlcore.engine.decision import AuditRecord, Decision, Effect, Transition
from hlcore.errors import BadInput
from hlcore.policy.conditions import Compiler, Fn, references
from hlcore.policy.model import ANY_STATE, MachineDef, Policy, TransitionDef

SEED_EVENT = "seeded"
_MISSING = object()
RESTORE_EVENT = "restored_unknown_state"
AUDIT_EFFECT = "audit"  # an effect that writes one audit record on the rule's machine (docs/policy.md)


class Instance:
    """One running machine: a singleton, or one key of a template (e.g. exit_cluster/BTC).

    Never registered with `transitions` (`Machine.add_model`): the engine triggers events on the
    machine's `Event` objects with the instance as the model, which reads and sets only `state`.
    """

    def __init__(self, machine: str, key: tuple[Any, ...], state: str, reason: str | None, since: int,
                 variables: dict[str, Any]):
        self.machine = machine
        self.key = key
        self.id = machine if not key else machine + "/" + "/".join(str(k) for k in key)
        self.state = state
        self.reason = reason
        self.since = since
        self.vars = variables

    def row(self) -> dict[str, Any]:
        return {"machine": self.machine, "instance": self.id, "key": list(self.key), "state": self.state,
                "reason": self.reason, "since_ms": self.since, "vars": dict(sorted(self.vars.items()))}


@dataclass(frozen=True)
class _Action:
    """A compiled `then:` of a rule row or the actions of a transition."""

    source: str
    event: str | None
    machine: str | None
    reason: Fn | None
    severity: str | None
    sets: tuple[tuple[str, Fn], ...]
    records: tuple[tuple[str, Fn, Fn], ...]
    effects: tuple[tuple[str, tuple[tuple[str, Fn], ...]], ...]
    emits: tuple[tuple[str, tuple[tuple[str, Fn], ...]], ...]


class _Ctx:
    """Evaluation context of one fact (and, inside a transition, of one instance)."""

    __slots__ = ("engine", "fields", "kind", "now", "self_inst")

    def __init__(self, engine: Engine, kind: str, fields: Mapping[str, Any], now: int, self_inst: Instance | None):
        self.engine = engine
        self.kind = kind
        self.fields = fields
        self.now = now
        self.self_inst = self_inst

    def _inst(self, machine: str) -> Instance | None:
        return self.engine._resolve(machine, self)

    def state_of(self, machine: str) -> str | None:
        inst = self._inst(machine)
        return inst.state if inst else None

    def reason_of(self, machine: str) -> str | None:
        inst = self._inst(machine)
        return inst.reason if inst else None

    def since_of(self, machine: str) -> int | None:
        inst = self._inst(machine)
        return inst.since if inst else None

    def var_of(self, machine: str | None, name: str) -> Any:
        inst = self.self_inst if machine is None else self._inst(machine)
        return inst.vars.get(name) if inst else None

    def tally(self, name: str, key: Any, within_ms: int, agg: str) -> float:
        return self.engine._tally(name, key, within_ms, agg, self.now)

    def count_in_state(self, machine: str, states: frozenset[str]) -> int:
        consulted.note("machines", machine)
        engine = self.engine
        evicted = engine._evicted_count[machine]
        return (sum(1 for i in engine._instances[machine].values() if i.state in states)
                + sum(evicted[s] for s in states))


class Engine:
    """Runs one compiled policy over a stream of facts."""

    def __init__(self, policy: Policy, config: Any, clock: Clock):
        with consulted.paused():  # compiling reads every table and setting, whatever runs later
            self._setup(policy, config, clock)

    def _setup(self, policy: Policy, config: Any, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.hits = trace.current()  # rule-row hit counts while a coverage run collects them
        self._compiler = Compiler(_RunScope(policy, config), policy.guards, policy.allowlists)
        self._instances: dict[str, dict[tuple[Any, ...], Instance]] = {m: {} for m in policy.machines}
        self._tallies: dict[tuple[str, Any], deque[tuple[int, float]]] = {}
        self._tally_keep: dict[str, int] = {}
        self._machines: dict[str, Machine] = {}
        self._trivial: dict[tuple[str, str, str], bool] = {}
        self._hold_reason: dict[tuple[str, str, str], Any] = {}
        self._has_exit: dict[tuple[str, str, str], bool] = {}
        self._runners: dict[str, Callable[..., None]] = {}
        self._config = config
        self._seeded: set[str] = set()
        self._tdefs: dict[tuple[str, int], _Action] = {}
        self._gate_machines: dict[str, list[MachineDef]] = {}
        self._new_tallies: list[dict[str, Any]] = []
        self._dirty: dict[str, Instance] = {}
        # Eviction (issue 12: flat latency): instances in a final state, once persisted, leave memory;
        # the key and its state stay (`in_state` counts and key-less gates still see them), and the
        # next fact naming the key restores the instance from storage (`restore`), never re-seeds it.
        # Off until a storage-bound owner (`Runtime`) sets `restore`.
        self.restore: Callable[[str, str], Mapping[str, Any] | None] | None = None
        self._final: dict[str, frozenset[str]] = {
            m.name: frozenset(s for s, d in m.states.items() if d.final) for m in policy.machines.values() if m.key}
        self._evicted: dict[str, dict[tuple[Any, ...], str]] = {m: {} for m in policy.machines}
        self._evicted_count: dict[str, Counter[str]] = {m: Counter() for m in policy.machines}
        self._pend = _Pending(0, "", {})
        self._ctx = _Ctx(self, "", {}, 0, None)
        self._compile()

    # ------------------------------------------------------------------ compile
    def _compile(self) -> None:
        p = self.policy
        comp = self._compiler
        for m in p.machines.values():
            self._build_machine(m)
            for gate in sorted(m.gates()):
                self._gate_machines.setdefault(gate, []).append(m)
            if not m.key:
                self._instance(m.name, ())  # singletons exist from the start; compiled rules hold them
        by_kind: dict[str, list[tuple[Any, list[tuple[Any, _Action]]]]] = {}
        for table in p.tables:
            for row in table.rows:
                action = self._action(f"{table.name}.{row.id}", row.then, table.machine)
                for kind in row.on:
                    lst = by_kind.setdefault(kind, [])
                    if not lst or lst[-1][0] is not table:
                        lst.append((table, []))
                    lst[-1][1].append((row, action))
        singletons = {name: inst[()] for name, inst in self._instances.items() if () in inst}
        holds: dict[tuple[str, str], set[str]] = {}
        stuck: dict[tuple[str, str], set[str]] = {}
        for (machine, state, event), trivial in self._trivial.items():
            if trivial:
                holds.setdefault((machine, event), set()).add(state)
            if not self._has_exit.get((machine, state, event)):
                stuck.setdefault((machine, event), set()).add(state)
        frozen = {k: frozenset(v) for k, v in holds.items()}
        no_exit = {k: frozenset(v) for k, v in stuck.items()}
        self._runners = {kind: compile_kind(kind, tables, p, comp, self._config, singletons, frozen, no_exit)
                         for kind, tables in sorted(by_kind.items())}
        for node in [*(r.when for _, r in _rows(p)), *p.guards.values(), *p.allowlists.values()]:
            for ref in _walk_aggs(node):
                name = ref.get("count") or ref.get("sum")
                within = comp.duration(ref["within"])(None)  # type: ignore[arg-type]
                self._tally_keep[name] = max(self._tally_keep.get(name, 0), int(within or 0))

    def _action(self, source: str, body: Mapping[str, Any], default_machine: str | None) -> _Action:
        comp = self._compiler
        reason = body.get("reason")
        return _Action(
            source=source,
            event=body.get("event"),
            machine=body.get("machine") or default_machine,
            reason=None if reason is None else comp.operand(reason),
            severity=body.get("severity"),
            sets=tuple((k, comp.operand(v)) for k, v in (body.get("set") or {}).items()),
            records=tuple((r["tally"], comp.operand(r.get("key")), comp.operand(r.get("value", 1)))
                          for r in body.get("record") or ()),
            effects=tuple((e["kind"], tuple((k, comp.operand(v)) for k, v in e.items() if k != "kind"))
                          for e in body.get("effects") or ()),
            emits=tuple((e["fact"], tuple((k, comp.operand(v)) for k, v in (e.get("with") or {}).items()))
                        for e in body.get("emit") or ()),
        )

    def _build_machine(self, m: MachineDef) -> None:
        ordered = sorted(m.transitions, key=lambda t: (-(t.priority or 0), t.index))
        specs = []
        for t in ordered:
            action = self._action(f"{m.name}.transitions[{t.index}]",
                                  {"reason": t.reason, "set": t.set, "effects": t.effects, "emit": t.emit}, m.name)
            self._tdefs[(m.name, t.index)] = action
            conditions = [self._guard_cond(g) for g in t.guards]
            specs.append({"trigger": t.event, "source": "*" if ANY_STATE in t.sources else list(t.sources),
                          "dest": t.dest, "conditions": conditions,
                          "after": [self._after_cb(m, t, action)]})
            for s in m.sources_of(t):
                self._has_exit[(m.name, s, t.event)] = True
        for s in m.states:
            for e in m.events:
                cands = [t for t in m.transitions if t.event == e and t.leaves(s)]
                self._hold_reason[(m.name, s, e)] = cands[0].reason if cands else None
                self._trivial[(m.name, s, e)] = bool(cands) and all(
                    t.dest == s and not t.guards and not t.set and not t.effects and not t.emit
                    and (t.reason is None or isinstance(t.reason, str)) for t in cands)
        self._machines[m.name] = Machine(model=[], states=list(m.states), transitions=specs, initial=m.initial,
                                         auto_transitions=False, queued=True, send_event=True,
                                         ignore_invalid_triggers=True)

    def _guard_cond(self, name: str) -> Callable[[Any], bool]:
        fn = self._compiler.guard(name)
        return lambda ed: bool(fn(ed.kwargs["ctx"]))

    # ------------------------------------------------------------------ instances
    def _instance(self, machine: str, key: tuple[Any, ...]) -> Instance:
        inst = self._instances[machine].get(key)
        if inst is None:
            if key in self._evicted[machine]:
                return self._restore(machine, key)
            m = self.policy.machines[machine]
            inst = Instance(machine, key, m.initial, m.initial_reason, self.clock.now_ms(), dict(m.vars))
            self._instances[machine][key] = inst
            # Not `Machine.add_model`: the engine fires events through `Machine.events[...].trigger(inst)`,
            # which needs only `inst.state`. add_model scanned the machine's model list (O(instances)) and
            # hung ~2 partials per event and state on every instance (issue 12: heap and GC grew per order).
        return inst

    def _restore(self, machine: str, key: tuple[Any, ...]) -> Instance:
        """Bring an evicted instance back as storage has it (state, reason, since, vars). Its row was
        committed before it was evicted; if storage no longer has it, the state it was evicted in
        stands (a final state: re-seeding it would let a settled event or order start over)."""
        m = self.policy.machines[machine]
        state = self._evicted[machine][key]
        inst = Instance(machine, key, state, None, self.clock.now_ms(), dict(m.vars))
        row = self.restore(machine, inst.id) if self.restore is not None else None
        if row is not None and row["state"] in m.states:
            inst.state, inst.reason = row["state"], row.get("reason")
            inst.since = int(row.get("since_ms") or inst.since)
            inst.vars.update({k: v for k, v in (row.get("vars") or {}).items() if k in m.vars})
        else:
            self._dirty[inst.id] = inst  # written back as it stands
        del self._evicted[machine][key]
        self._evicted_count[machine][state] -= 1
        self._instances[machine][key] = inst
        return inst

    def evict(self, machine: str, key: tuple[Any, ...]) -> bool:
        """Drop a persisted instance in a final state from memory (the caller knows its row is
        committed); returns whether it was evicted. A changed-but-unsaved instance stays."""
        inst = self._instances[machine].get(key)
        if (inst is None or self.restore is None or inst.state not in self._final.get(machine, ())
                or inst.id in self._dirty):
            return False
        del self._instances[machine][key]
        self._evicted[machine][key] = inst.state
        self._evicted_count[machine][inst.state] += 1
        return True

    def _resolve(self, machine: str, ctx: _Ctx) -> Instance | None:
        if ctx.self_inst is not None and ctx.self_inst.machine == machine:
            return ctx.self_inst
        m = self.policy.machines[machine]
        if not m.key:
            return self._instance(machine, ())
        try:
            key = tuple(ctx.fields[k] for k in m.key)
        except KeyError:
            return None
        return self._instances[machine].get(key) or self._instance(machine, key)

    def start(self, persisted: Iterable[Mapping[str, Any]] = (), tallies: Iterable[Mapping[str, Any]] = ()) -> Decision:
        """Restore persisted instances and seed singletons; unknown persisted states fall back
        to the machine's declared fallback (unknown ⇒ HALT / STALE), audited. What seeding reads of each
        machine (key, initial state and reason, states, fallback, vars) is noted as `machine_seed`."""
        consulted.note_all("machine_seed", dict.keys(self.policy.machines))
        with consulted.paused():
            return self._start(persisted, tallies)

    def _start(self, persisted: Iterable[Mapping[str, Any]], tallies: Iterable[Mapping[str, Any]]) -> Decision:
        now = self.clock.now_ms()
        pend = _Pending(now, "start", {})
        persisted_rows = [r for r in persisted if r.get("machine") in self.policy.machines]
        for row in sorted(persisted_rows, key=lambda r: (r["machine"], r["instance"])):
            m = self.policy.machines.get(row["machine"])
            if m is None:
                continue  # a machine the policy no longer has: nothing runs it
            key = tuple(row.get("key") or ())
            if m.key and not key:  # storage keeps the instance id "machine/k1/k2"; the last key may hold '/'
                key = tuple(str(row["instance"]).split("/", len(m.key))[1:])
            state, reason = row["state"], row.get("reason")
            if self.restore is not None and state in self._final.get(m.name, ()):
                self._forget_instance(m.name, key)
                self._evicted[m.name][key] = state  # persisted and final: restored from storage when named
                self._evicted_count[m.name][state] += 1
                continue
            if key in self._evicted[m.name]:  # storage's row says what it is now: no restore needed
                self._forget_instance(m.name, key)
            inst = self._instance(m.name, key)
            if state not in m.states:
                fb = m.fallback or {"state": m.initial, "reason": m.initial_reason}
                pend.audit.append(self._audit(now, m, inst, state, fb["state"], RESTORE_EVENT, fb["reason"],
                                              "start", {"persisted_state": state, "persisted_reason": reason}))
                pend.transitions.append(Transition(m.name, inst.id, state, fb["state"], reason, fb["reason"],
                                                   RESTORE_EVENT, self._severity(fb["reason"], None)))
                state, reason = fb["state"], fb["reason"]
                since = now
                self._dirty[inst.id] = inst
            else:
                since = int(row.get("since_ms") or now)
            self._machines[m.name].set_state(state, model=inst)
            inst.state, inst.reason, inst.since = state, reason, since
            inst.vars.update({k: v for k, v in (row.get("vars") or {}).items() if k in m.vars})
        restored = {r["machine"] for r in persisted_rows}
        for m in self.policy.machines.values():
            if not m.key and m.name not in restored and m.name not in self._seeded:
                self._seeded.add(m.name)
                inst = self._instance(m.name, ())
                inst.since = now
                self._dirty[inst.id] = inst
                pend.audit.append(self._audit(now, m, inst, None, inst.state, SEED_EVENT, inst.reason, "start", {}))
                pend.transitions.append(Transition(m.name, inst.id, None, inst.state, None, inst.reason,
                                                   SEED_EVENT, self._severity(inst.reason, None)))
        for t in tallies:
            self._tallies.setdefault((t["name"], t.get("key")), deque()).append((int(t["ts_ms"]), float(t["value"])))
        return pend.decision()

    def _forget_instance(self, machine: str, key: tuple[Any, ...]) -> None:
        """Neither in memory nor evicted (a restart or an operator's sync is about to say what it is)."""
        inst = self._instances[machine].pop(key, None)
        if inst is not None:
            self._dirty.pop(inst.id, None)
        state = self._evicted[machine].pop(key, None)
        if state is not None:
            self._evicted_count[machine][state] -= 1

    # ------------------------------------------------------------------ queries
    def state(self, machine: str, **key: Any) -> str:
        return self._lookup(machine, key).state

    def reason(self, machine: str, **key: Any) -> str | None:
        return self._lookup(machine, key).reason

    def var(self, machine: str, name: str, **key: Any) -> Any:
        return self._lookup(machine, key).vars.get(name)

    def _lookup(self, machine: str, key: Mapping[str, Any]) -> Instance:
        m = self.policy.machines[machine]
        return self._instance(machine, tuple(key[k] for k in m.key))

    def instances(self) -> list[dict[str, Any]]:
        """Every instance's persisted form, in a stable order (for storage and journals)."""
        return [i.row() for name in sorted(self._instances) for _, i in sorted(self._instances[name].items(),
                                                                               key=lambda kv: kv[1].id)]

    def drain_changed(self) -> list[dict[str, Any]]:
        """Persistable rows of the instances that changed since the last call, in a stable order."""
        rows = [i.row() for _, i in sorted(self._dirty.items())]
        self._dirty = {}
        return rows

    def drain_new_tallies(self) -> list[dict[str, Any]]:
        """Tally entries recorded since the last call (for storage)."""
        rows, self._new_tallies = self._new_tallies, []
        return rows

    def tally_rows(self) -> list[dict[str, Any]]:
        return [{"name": n, "key": k, "ts_ms": ts, "value": v}
                for (n, k), q in sorted(self._tallies.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))
                for ts, v in q]

    def may(self, gate: str, **key: Any) -> bool:
        """Is `gate` open? Every machine that mentions the gate must allow it in its current
        state; a gate no machine mentions is closed (unknown ⇒ no)."""
        machines = self._gate_machines.get(gate)
        if not machines:
            return False
        for m in machines:
            consulted.note("machines", m.name)  # its states' `allows`
            if m.key:
                if all(k in key for k in m.key):
                    insts = [self._instance(m.name, tuple(key[k] for k in m.key))]
                else:
                    insts = list(self._instances[m.name].values())
                    evicted = self._evicted_count[m.name]
                    if any(n > 0 and gate not in m.states[s].allows for s, n in evicted.items()):
                        return False  # an evicted instance's state shuts it, as it did in memory
            else:
                insts = [self._instance(m.name, ())]
            for inst in insts:
                if gate not in m.states[inst.state].allows:
                    return False
        return True

    # ------------------------------------------------------------------ observe
    def observe(self, kind: str, fields: Mapping[str, Any] | None = None) -> Decision:
        """Evaluate the rule tables on one fact, fire the resulting events, return the Decision."""
        consulted.note("facts", kind)
        run = self._runners.get(kind)
        if run is None and kind not in self.policy.facts:
            raise BadInput(f"unknown fact '{kind}' (the policy's facts are declared in rules/facts.yaml)")
        now = self.clock.now_ms()
        if fields is None:
            fields = {}
        pend = self._pend  # reused: most facts leave it untouched, and it is reset after use
        queue = pend.queue  # facts emitted by transitions join the same FIFO
        try:
            if run is not None:
                ctx = self._ctx
                ctx.kind, ctx.fields, ctx.now, ctx.self_inst = kind, fields, now, None
                run(self, ctx, fields, now, pend, queue)
            while queue:
                k, f = queue.popleft()
                self._evaluate(k, f, now, pend, queue)
        except BaseException:
            self._pend = _Pending(now, kind, fields)  # never leak half a decision into the next one
            raise
        if not pend.touched:
            return Decision(now, kind)
        return pend.take(now, kind)

    def _evaluate(self, kind: str, fields: Mapping[str, Any], now: int, pend: _Pending,
                  queue: deque[tuple[str, Mapping[str, Any]]]) -> None:
        consulted.note("facts", kind)
        run = self._runners.get(kind)
        if run is not None:
            run(self, _Ctx(self, kind, fields, now, None), fields, now, pend, queue)

    def _apply(self, action: _Action, ctx: _Ctx, pend: _Pending, queue: deque[tuple[str, Mapping[str, Any]]]) -> None:
        inst = ctx.self_inst
        if inst is not None:
            for name, fn in action.sets:
                value = fn(ctx)
                if inst.vars.get(name, _MISSING) != value:
                    inst.vars[name] = value
                    pend.var_changes.append((inst.id, name, value))
                    pend.touched = True
                    self._dirty[inst.id] = inst
        for name, keyfn, valuefn in action.records:
            key, value = keyfn(ctx), float(valuefn(ctx))
            q = self._tallies.setdefault((name, key), deque())
            q.append((ctx.now, value))
            self._new_tallies.append({"name": name, "key": key, "ts_ms": ctx.now, "value": value})
            keep = self._tally_keep.get(name, 0)
            while q and q[0][0] <= ctx.now - keep:
                q.popleft()
            pend.touched = True
        for kind, parts in action.effects:
            data = {k: fn(ctx) for k, fn in parts}
            pend.effects.append(Effect(kind, action.source, data))
            pend.touched = True
            if kind == AUDIT_EFFECT and inst is not None:  # audit only: one record, the machine stays put
                pend.audit.append(self._audit(ctx.now, self.policy.machines[inst.machine], inst, inst.state,
                                              inst.state, action.source, data.get("reason_code"), ctx.kind,
                                              dict(ctx.fields)))
        for fact, parts in action.emits:
            queue.append((fact, {k: fn(ctx) for k, fn in parts}))
        if action.event is not None and inst is not None:
            reason = action.reason(ctx) if action.reason is not None else None
            self._dispatch(inst, action.event, reason, action.severity, ctx, pend)

    def _dispatch(self, inst: Instance, event: str, reason: str | None, severity: str | None, ctx: _Ctx,
                  pend: _Pending) -> None:
        key = (inst.machine, inst.state, event)
        if not self._has_exit.get(key):
            return  # no transition takes this event from here: nothing happens, nothing to record
        if self._trivial[key]:
            new_reason = reason if reason is not None else (self._hold_reason[key] or inst.reason)
            if new_reason == inst.reason:
                return  # a hold: nothing moves, nothing to audit
        pend.touched = True
        tctx = _Ctx(self, ctx.kind, ctx.fields, ctx.now, inst)
        before = (inst.state, inst.reason)
        self._machines[inst.machine].events[event].trigger(inst, ctx=tctx, reason=reason, severity=severity,
                                                          pend=pend)
        if (inst.state, inst.reason) == before and not pend.fired_last:
            pend.events.append((inst.id, event, "ignored"))
        pend.fired_last = False

    def _after_cb(self, m: MachineDef, t: TransitionDef, action: _Action) -> Callable[[Any], None]:
        def after(ed: Any) -> None:
            inst: Instance = ed.model
            ctx: _Ctx = ed.kwargs["ctx"]
            pend: _Pending = ed.kwargs["pend"]
            pend.fired_last = True
            reason = ed.kwargs["reason"]
            if reason is None and action.reason is not None:
                reason = action.reason(ctx)
            src = ed.transition.source
            if reason is None:
                reason = inst.reason if src == t.dest else None
            if src == t.dest and reason == inst.reason:
                # a hold: nothing moved, nothing to audit, but the transition's own actions still run
                pend.events.append((inst.id, t.event, "held"))
                self._apply(action, ctx, pend, pend.queue)
                return
            from_reason = inst.reason
            inst.reason = reason
            inst.since = ctx.now
            self._dirty[inst.id] = inst
            severity = self._severity(reason, ed.kwargs["severity"])
            pend.events.append((inst.id, t.event, "moved"))
            pend.transitions.append(Transition(m.name, inst.id, src, t.dest, from_reason, reason, t.event, severity))
            pend.audit.append(self._audit(ctx.now, m, inst, src, t.dest, t.event, reason, ctx.kind, dict(ctx.fields),
                                          severity))
            if src != t.dest:
                opened = set(m.states[t.dest].allows) - set(m.states[src].allows)
                closed = set(m.states[src].allows) - set(m.states[t.dest].allows)
                for gate in sorted(closed):
                    pend.effects.append(Effect("gate_closed", f"{m.name}.transitions[{t.index}]",
                                               {"gate": gate, "instance": inst.id}))
                for gate in sorted(opened):
                    pend.effects.append(Effect("gate_opened", f"{m.name}.transitions[{t.index}]",
                                               {"gate": gate, "instance": inst.id}))
            self._apply(action, ctx, pend, pend.queue)

        return after

    def _severity(self, reason: str | None, override: str | None) -> str | None:
        if override is not None:
            return override
        r = self.policy.reasons.get(reason) if reason else None
        return r.severity if r else None

    def _audit(self, now: int, m: MachineDef, inst: Instance, src: str | None, dest: str, event: str,
               reason: str | None, fact: str, facts: dict[str, Any], severity: str | None = None) -> AuditRecord:
        return AuditRecord(now, m.audit_category, m.name, inst.id, src, dest, event, reason,
                           severity if severity is not None else self._severity(reason, None), fact, facts,
                           self.policy.hash)

    def _tally(self, name: str, key: Any, within_ms: int, agg: str, now: int) -> float:
        q = self._tallies.get((name, key))
        if not q:
            return 0
        lo = now - within_ms
        total = 0.0
        count = 0
        for ts, value in reversed(q):
            if ts <= lo:
                break
            count += 1
            total += value
        return count if agg == "count" else total


class _Pending:
    """Decision under construction."""

    __slots__ = ("audit", "effects", "events", "fact", "fields", "fired_last", "now", "queue", "touched",
                 "transitions", "var_changes")

    def __init__(self, now: int, fact: str, fields: Mapping[str, Any]):
        self.now = now
        self.fact = fact
        self.fields = fields
        self.transitions: list[Transition] = []
        self.effects: list[Effect] = []
        self.audit: list[AuditRecord] = []
        self.events: list[tuple[str, str, str]] = []
        self.var_changes: list[tuple[str, str, Any]] = []
        self.queue: deque[tuple[str, Mapping[str, Any]]] = deque()
        self.touched = False
        self.fired_last = False

    def decision(self) -> Decision:
        return Decision(self.now, self.fact, tuple(self.transitions), tuple(self.effects), tuple(self.audit),
                        tuple(self.events), tuple(self.var_changes))

    def take(self, now: int, fact: str) -> Decision:
        """The decision so far, and a clean slate for the next fact (cheaper than a new object)."""
        decision = Decision(now, fact, tuple(self.transitions), tuple(self.effects), tuple(self.audit),
                            tuple(self.events), tuple(self.var_changes))
        self.var_changes.clear()
        self.transitions.clear()
        self.effects.clear()
        self.audit.clear()
        self.events.clear()
        self.touched = False
        self.fired_last = False
        return decision


class _RunScope:
    """Name resolution for compilation against the run's actual config."""

    def __init__(self, policy: Policy, config: Any):
        self._p = policy
        self._c = config

    def config_value(self, key: str) -> Any:
        return self._c.get(key)

    def list_values(self, name: str) -> list[Any]:
        return list(self._p.lists[name])

    def band(self, name: str) -> Mapping[str, Any] | None:
        return self._p.bands.get(name)


def _rows(p: Policy) -> Iterable[tuple[Any, Any]]:
    for t in p.tables:
        for r in t.rows:
            yield t, r


def _walk_aggs(node: Any) -> Iterable[Mapping[str, Any]]:
    from hlcore.policy.conditions import walk

    for m in walk(node):
        if ("count" in m or "sum" in m) and "within" in m:
            yield m


__all__ = ["Engine", "Instance", "references"]

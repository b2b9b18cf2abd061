"""How the order machine's states read and write `order_results` (copytrader §3.3, §4.6).

The machine keeps "parked" (an UNKNOWN past its retry budget) as a state of its own, so the policy
can tell "still polled" from "waits for the startup sweep / `ops recover-orders`". The table holds
the spec's representation: a state declared `stored_as: OTHER` is written as OTHER, with the
reason its transitions record as `error_code` (the loader checks that reason is a literal), and
that pair is how a reader tells its rows apart. Which states are unresolved or parked comes from
the policy lists `unresolved_order_states` / `parked_order_states`; no state name is spelled here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hlcore.policy.model import MachineDef, Policy
from hlcore.storage.copytrade import OrderResult, Orders


@dataclass(frozen=True)
class OrderStatuses:
    machine: MachineDef
    unresolved_states: tuple[str, ...]
    parked_states: tuple[str, ...]

    @classmethod
    def of(cls, policy: Policy, machine: str) -> OrderStatuses:
        lists = policy.lists
        return cls(policy.machines[machine], tuple(lists.get("unresolved_order_states", ())),
                   tuple(lists.get("parked_order_states", ())))

    def stored(self, state: str) -> str:
        """`order_results.status` for a machine state."""
        return self.machine.stored(state)

    @property
    def final(self) -> list[str]:
        """Stored statuses of the machine's final states: nothing follows them."""
        return list(dict.fromkeys(self.stored(s) for s, d in self.machine.states.items() if d.final))

    def _matches(self, state: str, result: OrderResult) -> bool:
        if result.status == state:  # stored under its own name (also a row written before `stored_as`)
            return True
        stored = self.stored(state)
        return stored != state and result.status == stored and result.error_code in self.machine.entry_reasons(state)

    def state_of(self, result: OrderResult | None) -> str | None:
        """The machine state a stored result stands for (None: no result yet)."""
        if result is None or result.status is None:
            return None
        for state in self.machine.states:
            if self.stored(state) != state and self._matches(state, result):
                return state
        return result.status

    def is_parked(self, result: OrderResult | None) -> bool:
        return self.state_of(result) in self.parked_states

    def is_unresolved(self, result: OrderResult | None) -> bool:
        """Outcome unknown and still within its budget: polled by the execute loop (not parked)."""
        return self.state_of(result) in self.unresolved_states

    def _results(self, orders: Orders, states: Iterable[str]) -> list[OrderResult]:
        wanted = set(states)
        statuses = list(dict.fromkeys(x for s in wanted for x in (self.stored(s), s)))
        return [r for status in statuses for r in orders.unknown_results(status) if self.state_of(r) in wanted]

    def unresolved_results(self, orders: Orders) -> list[OrderResult]:
        """Not-parked UNKNOWN results, oldest episode first (R6 `unparked_unknown`)."""
        return self._results(orders, self.unresolved_states)

    def parked_results(self, orders: Orders) -> list[OrderResult]:
        """Parked results, oldest episode first: what the startup sweep queries (§4.6)."""
        return self._results(orders, self.parked_states)

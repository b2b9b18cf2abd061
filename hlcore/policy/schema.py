"""Cerberus schemas of the policy file formats (docs/policy.md explains each field).

These describe the *shape* of machines/*.yaml and rules/*.yaml; they hold no policy values.
Semantic checks (unknown states, facts, config keys …) run after this, in `loader.py`.
"""

from __future__ import annotations

from typing import Any

from cerberus import Validator

from hlcore.yamlsource import Source

_NAME = {"type": "string", "regex": r"^[A-Za-z][A-Za-z0-9_.\-]*$"}
_CODE = {"type": "string", "regex": r"^[A-Za-z][A-Za-z0-9_]*$"}
_ANYMAP = {"type": "dict"}
_STR_OR_LIST = {"type": ["string", "list"], "schema": _NAME}
_ENTRIES_DIRECTION = {"type": "string", "allowed": ["fewer", "more", "neutral"]}

_ACTIONS: dict[str, Any] = {
    "set": {"type": "dict", "keysrules": _NAME},
    "effects": {"type": "list", "schema": {"type": "dict", "keysrules": _NAME}},
    "emit": {"type": "list", "schema": {
        "type": "dict", "schema": {
            "fact": {**_NAME, "required": True},
            "with": {"type": "dict", "keysrules": _NAME},
        }}},
}

MACHINE_SCHEMA: dict[str, Any] = {
    "machine": {**_NAME, "required": True},
    "description": {"type": "string"},
    "audit_category": {**_NAME},
    "key": {"type": "list", "schema": _NAME},
    "initial": {**_NAME, "required": True},
    "initial_reason": {**_CODE},
    "fallback": {"type": "dict", "schema": {"state": {**_NAME, "required": True},
                                             "reason": {**_CODE, "required": True}}},
    "vars": {"type": "dict", "keysrules": _NAME},
    "mirror": {"type": "dict", "schema": {"state": _NAME, "reason": _NAME, "since": _NAME, "message": _NAME}},
    "safety_order": {"type": "list", "schema": _NAME},  # safest state first: how `hlcore diff` labels moves
    "states": {
        "type": "dict", "required": True, "empty": False, "keysrules": _NAME,
        "valuesrules": {"type": "dict", "nullable": True, "schema": {
            "description": {"type": "string"},
            "allows": {"type": "list", "schema": _NAME},
            "halt": {"type": "boolean"},
            "final": {"type": "boolean"},
            "stored_as": _NAME,  # another state of this machine, named in storage columns instead
        }},
    },
    "events": {
        "type": "dict", "keysrules": _NAME,
        "valuesrules": {"type": "dict", "nullable": True, "schema": {
            "description": {"type": "string"},
            "operator": {"type": "boolean"},
        }},
    },
    "transitions": {
        "type": "list", "required": True,
        "schema": {"type": "dict", "schema": {
            "event": {**_NAME, "required": True},
            "source": {**_STR_OR_LIST, "required": True},
            "dest": {**_NAME, "required": True},
            "guards": {"type": "list", "schema": _NAME},
            "reason": {"type": ["string", "dict"]},
            "priority": {"type": "integer"},
            "description": {"type": "string"},
            **_ACTIONS,
        }},
    },
}

RULES_SCHEMA: dict[str, Any] = {
    "table": {**_NAME},
    "description": {"type": "string"},
    "machine": {**_NAME},
    "order": {"type": "integer", "default": 100},
    "match": {"type": "string", "allowed": ["first", "all"], "default": "all"},
    "on": _STR_OR_LIST,
    "severities": {"type": "list", "schema": _NAME},
    "reason_codes": {
        "type": "dict", "keysrules": _CODE,
        "valuesrules": {"type": "dict", "schema": {
            "severity": {**_NAME, "required": True},
            "text": {"type": "string"},
        }},
    },
    "lists": {"type": "dict", "keysrules": _NAME, "valuesrules": {"type": "list"}},
    "allowlists": {"type": "dict", "keysrules": _NAME,
                   "valuesrules": {"type": "dict", "keysrules": _CODE, "valuesrules": _ANYMAP}},
    "guards": {"type": "dict", "keysrules": _NAME, "valuesrules": _ANYMAP},
    "tallies": {"type": "dict", "keysrules": _NAME,
                "valuesrules": {"type": "dict", "nullable": True, "schema": {
                    "description": {"type": "string"}, "keep": {"type": ["string", "dict"]}}}},
    "safer": {"type": "dict", "schema": {  # safety directions for `hlcore diff` (docs/diff.md)
        "allowlists": {"type": "dict", "keysrules": _NAME, "valuesrules": _ENTRIES_DIRECTION},
        "lists": {"type": "dict", "keysrules": _NAME, "valuesrules": _ENTRIES_DIRECTION},
        "severity": {"type": "string", "allowed": ["higher", "lower", "neutral"]},
    }},
    "bands": {"type": "dict", "keysrules": _NAME, "valuesrules": {"type": "dict", "schema": {
        "fact": {**_NAME, "required": True},
        "direction": {"type": "string", "allowed": ["rising", "falling"], "default": "rising"},
        "fire": {"required": True},
        "reset": {"required": True},
        "description": {"type": "string"},
    }}},
    "rules": {
        "type": "list",
        "schema": {"type": "dict", "schema": {
            "id": {**_NAME, "required": True},
            "description": {"type": "string"},
            "on": _STR_OR_LIST,
            "when": {"type": "dict", "required": True},
            "then": {"type": "dict", "required": True, "schema": {
                "event": {**_NAME},
                "machine": {**_NAME},
                "reason": {"type": ["string", "dict"]},
                "severity": {**_NAME},
                "record": {"type": "list", "schema": {"type": "dict", "schema": {
                    "tally": {**_NAME, "required": True},
                    "key": {},
                    "value": {},
                }}},
                **_ACTIONS,
            }},
        }},
    },
}

FACTS_SCHEMA: dict[str, Any] = {
    "description": {"type": "string"},
    "facts": {
        "type": "dict", "required": True, "keysrules": _NAME,
        "valuesrules": {"type": "dict", "schema": {
            "description": {"type": "string"},
            "key": {"type": "list", "schema": _NAME},
            "internal": {"type": "boolean"},
            # Only an operator command feeds it (no job emits it): what makes an `operator: true`
            # event trustworthy to the invariants (rules/invariants.yaml).
            "operator": {"type": "boolean"},
            "fields": {"type": "dict", "required": True, "keysrules": _NAME, "valuesrules": {
                "type": "string",
                "allowed": ["number", "integer", "string", "boolean", "timestamp_ms", "duration_ms", "list"],
            }},
        }},
    },
}


INVARIANT_CHECKS = ("gates_declared", "halt_declared", "halt_closes_gates", "halt_exits_guarded",
                    "halt_exit_one_step", "operator_events", "initial_is_safest", "fallback_is_safest",
                    "reasons_reach_halt", "rules_live")

INVARIANTS_SCHEMA: dict[str, Any] = {
    "description": {"type": "string"},
    "invariants": {
        "type": "list", "required": True,
        "schema": {"type": "dict", "schema": {
            "id": {**_NAME, "required": True},
            "check": {"type": "string", "required": True, "allowed": list(INVARIANT_CHECKS)},
            "description": {"type": "string"},
            "machine": {**_NAME},
            "states": {"type": "list", "schema": _NAME},
            "gates": {"type": ["list", "dict"]},
            "reasons": {"type": "list", "schema": _CODE},
            "facts": {"type": "list", "schema": _NAME},  # reasons_reach_halt: raised on these facts
        }},
    },
}


def _flatten(errors: Any, path: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    out: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(errors, dict):
        for key, value in errors.items():
            out.extend(_flatten(value, (*path, key)))
    elif isinstance(errors, list):
        for item in errors:
            out.extend(_flatten(item, path))
    else:
        out.append((path, str(errors)))
    return out


def validate_shape(src: Source, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, list]:
    """Validate one document against a schema; problems carry file, line and path."""
    if not isinstance(src.data, dict):
        return None, [src.problem((), "expected a mapping at the top of the file")]
    validator = Validator(schema, allow_unknown=False)
    if validator.validate(src.data):
        return validator.document, []
    problems = []
    for path, message in sorted(_flatten(validator.errors, ()), key=lambda pm: (src.line(pm[0]) or 0, pm)):
        if message == "unknown field":
            message = f"unknown key '{path[-1]}'"
        problems.append(src.problem(path, message))
    return None, problems

"""Hypothesis strategies for what comes from outside: JSON of every shape (NaN, huge numbers,
deep nesting, lone surrogates), text and bytes of any kind, and fleet messages with any
field changed to anything. Shared by the property tests of the codec, remote control, events,
the CLI and a node's receive path."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from fleet.engine import message as codec

#: Settings of every property test: no example database written into the tree, no deadline
#: (the machine is shared), and enough examples to find the odd shape.
PROPERTY = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: Any text, lone surrogates (bytes that were not UTF-8, as the Redis client reads them)
#: and control characters included.
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
                   max_size=40) | st.text(max_size=40)

_SCALARS = (st.none() | st.booleans() | st.integers() |
            st.integers(min_value=-(10**400), max_value=10**400) |
            st.floats(allow_nan=True, allow_infinity=True) | ANY_TEXT)

#: Any JSON-like value (NaN and infinities included: `json.dumps` writes them as tokens).
JSON_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=5) |
                           st.dictionaries(ANY_TEXT, inner, max_size=5), max_leaves=25)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


_FIELDS = ["v", "id", "task", "args", "kwargs", "queue", "priority", "eta", "expires",
           "retries", "root_id", "parent_id", "group_id", "headers", "options", "callbacks",
           "sent_at", "origin"]
_NESTED = {"options": ["acks_late", "ignore_result", "time_limit", "soft_time_limit",
                       "track_started", "reject_on_worker_lost"],
           "headers": [codec.REDELIVERY_HEADER],
           "callbacks": ["link", "link_error", "chain", "chord"]}


@st.composite
def mutated_messages(draw: st.DrawFn, task: str = "units.fast") -> str:
    """A valid message of `task` with a few fields set to anything (or removed), nested
    options, headers and workflow fields included."""
    data = codec.build(task, [draw(st.integers(0, 9))], {}).to_dict()
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(_FIELDS + list(_NESTED)))
        if key in _NESTED and draw(st.booleans()):
            inner = dict(data[key]) if isinstance(data.get(key), dict) else {}
            inner[draw(st.sampled_from(_NESTED[key]))] = draw(JSON_VALUES)
            data[key] = inner
        elif draw(st.booleans()):
            data.pop(key, None)
        else:
            data[key] = draw(JSON_VALUES)
    return _dumps(data)


#: Bodies of every shape: anything at all, JSON of any shape, deep nesting, and messages
#: with fields changed to anything.
BODIES = st.one_of(
    ANY_TEXT,
    st.binary(max_size=60).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
    JSON_VALUES.map(_dumps),
    st.integers(1, 3000).map(lambda n: "[" * n),
    st.integers(1, 200).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 200).map(lambda n: '{"a":' * n + "1" + "}" * n),
    mutated_messages(),
    mutated_messages(),
)

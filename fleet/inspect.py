"""Remote control for operators: the client of `fleet.engine.remote`, and explanations.

The client itself (`Control`, `Inspect`, `Replies`, `NodeSeen`, `known_nodes`) lives in the
engine, behind `app.control`, and is importable from here as before. What this module adds
is for operators: why nobody answered (`explain_silence`). It never prints: the CLI renders.
"""

from __future__ import annotations

from fleet.engine.remote import (
    MISSED_HEARTBEATS,
    POLL_INTERVAL,
    Control,
    Inspect,
    NodeSeen,
    Replies,
    known_nodes,
)
from fleet.engine.transport import mask_url

__all__ = ["MISSED_HEARTBEATS", "POLL_INTERVAL", "Control", "Inspect", "NodeSeen", "Replies",
           "explain_silence", "known_nodes"]


# == explaining silence ===========================================================================

def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def explain_silence(replies: Replies, broker_url: str, broker_error: str | None = None) -> str:
    """Why nobody answered, for the operator: which nodes are known and when each was last
    seen, whether the broker was reachable, and what to try."""
    where = mask_url(broker_url)
    if broker_error:
        return (f"no node replied: the broker {where} was not reachable ({broker_error}); "
                "check that it runs and that -b/broker_url is right")
    timeout = f"{replies.timeout:g}s"
    # A revoke is stored before it is broadcast: say so, or it reads as if it was lost.
    stored = (" The revoke itself is stored in the broker: nodes started later refuse "
              "these tasks." if replies.command in ("revoke", "terminate") else "")
    if not replies.known:
        return (f"no node replied: the broker {where} was reachable but no node is "
                "registered with it (none is running, or the nodes use another broker: "
                f"check -b/broker_url); try `fleet multi status`.{stored}")
    seen = "; ".join(f"{node.name} (pid {node.pid} on {node.host or '?'}): last heartbeat "
                     f"{_ago(node.age)}, {'online' if node.online else 'offline'}"
                     for node in replies.known)
    wanted = ""
    if replies.expected and not any(name in {n.name for n in replies.known}
                                    for name in replies.expected):
        wanted = f" None of {', '.join(replies.expected)} is known to the broker."
    return (f"no node replied within {timeout} (broker {where} reachable). Known nodes: "
            f"{seen}.{wanted} Try a longer --timeout, or `fleet multi status` to see whether "
            f"the nodes run.{stored}")

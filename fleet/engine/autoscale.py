"""Autoscaling: a node's pool grows while tasks wait and shrinks after an idle keep-alive,
between a minimum and a maximum (`fleet worker --autoscale MAX,MIN`).

It runs as a loop timer of the node (`Node.add_timer`) and resizes the pool through the
node's child supervision (`node.children`), so it acts in the node's main loop
like everything else, a few times a second. While it is on, manual resizing (TTIN/TTOU, the
remote pool_grow/pool_shrink commands) still works inside the range and is refused with a
clear message beyond it (`check`); the remote `autoscale` command changes the range
(`update`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleet.operator_errors import FleetError, UsageError

if TYPE_CHECKING:
    from fleet.engine.worker import Node

log = logging.getLogger("fleet.autoscale")

#: Seconds between two looks at the pool.
TICK = 0.1


def parse_autoscale(text: str) -> tuple[int, int]:
    """'MAX,MIN' -> (max, min); the numbers may come in either order; 'N' means (N, 0)."""
    parts = [part.strip() for part in str(text).split(",")]
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or min(numbers) < 0 or max(numbers) < 1:
        raise UsageError(f"invalid autoscale range {text!r}",
                         "write MAX,MIN with whole numbers, e.g. --autoscale 8,2")
    if len(numbers) == 1:
        numbers.append(0)
    return max(numbers), min(numbers)


@dataclass
class Autoscaler:
    node: Node
    maximum: int
    minimum: int
    keepalive: float
    idle_since: float | None = None

    @property
    def initial(self) -> int:
        """Children to start with: the minimum, but at least one, so the node proves at start
        that its children can boot."""
        return max(1, self.minimum)

    def attach(self) -> None:
        self.node.children.autoscaler = self
        self.node.add_timer(self.tick)

    def describe(self) -> str:
        return f"--autoscale {self.maximum},{self.minimum}"

    def update(self, maximum: int, minimum: int) -> str:
        """Change the range (the remote `autoscale` command); returns the reply text."""
        if minimum > maximum:
            maximum, minimum = minimum, maximum
        if maximum < 1 or minimum < 0:
            raise FleetError(f"invalid autoscale range {maximum},{minimum}",
                             "the maximum must be at least 1 and the minimum at least 0")
        self.node.children.check_most(maximum, f"autoscale {maximum},{minimum}")
        self.maximum, self.minimum = maximum, minimum
        current = self.node.options.concurrency
        if current > maximum:
            self.node.children.resize(maximum)
        elif current < minimum:
            self.node.children.resize(minimum)
        return f"autoscale now max={maximum} min={minimum}"

    def check(self, target: int, what: str) -> None:
        """Refuse a manual resize (`what`: 'TTIN', 'pool_grow', ...) beyond the range."""
        if target > self.maximum:
            raise FleetError(f"{what} refused: the pool would have {target} children, over "
                             f"the autoscale maximum of {self.maximum} ({self.describe()})",
                             "raise the maximum (remote command `autoscale MAX MIN`) instead")
        if target < self.minimum:
            raise FleetError(f"{what} refused: the pool would have {target} children, under "
                             f"the autoscale minimum of {self.minimum} ({self.describe()})",
                             "lower the minimum (remote command `autoscale MAX MIN`) instead")

    def tick(self, now: float) -> float:
        node = self.node
        children = node.children
        if node.state != "running" or children.pool is None:
            return now + TICK
        current = node.options.concurrency
        waiting = len(node.jobs.buffer)
        idle = len(children.idle())
        if waiting and not idle and current < self.maximum:
            target = min(self.maximum, current + waiting)
            log.info("%s: scaling up from %d to %d children (%d task(s) waiting)", node.name,
                     current, target, waiting)
            children.resize(target)
            self.idle_since = None
        elif idle and not waiting and current > self.minimum:
            if self.idle_since is None:
                self.idle_since = now
            elif now - self.idle_since >= self.keepalive:
                target = max(self.minimum, current - idle)
                log.info("%s: scaling down from %d to %d children (idle for %gs)", node.name,
                         current, target, self.keepalive)
                children.resize(target)
                self.idle_since = now
        else:
            self.idle_since = None
        return now + TICK

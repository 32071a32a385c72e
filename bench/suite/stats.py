"""Medians, percentiles and within-round ratios: the pure arithmetic behind RESULTS.md.

A metric holds one value per round for every peer (None where that round failed). A ratio is
taken within each round (fleet's value and the peer's value measured minutes apart, under the
same machine load) and only then summarised, so drift of the machine cancels out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Metric:
    """One measured quantity, e.g. drain rate with results off, per peer and round."""

    id: str
    title: str
    unit: str
    better: str  # "higher" or "lower"
    values: dict[str, list[float | None]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # peer -> why it has no figure

    def add(self, peer: str, value: float | None) -> None:
        self.values.setdefault(peer, []).append(value)

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "unit": self.unit, "better": self.better,
                "values": self.values, "unavailable": self.unavailable}

    @classmethod
    def from_dict(cls, data: dict) -> Metric:
        return cls(data["id"], data["title"], data["unit"], data["better"],
                   {peer: list(values) for peer, values in data["values"].items()},
                   dict(data.get("unavailable", {})))


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    count: int


def present(values: Sequence[float | None]) -> list[float]:
    return [value for value in values if value is not None and not math.isnan(value)]


def summarize(values: Sequence[float | None]) -> Summary | None:
    """Median, min and max of the rounds that produced a value (None if none did)."""
    got = present(values)
    if not got:
        return None
    return Summary(statistics.median(got), min(got), max(got), len(got))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


def advantage(fleet: float, peer: float, better: str) -> float | None:
    """How many times better fleet's value is than the peer's (>1: fleet is better)."""
    if fleet <= 0 or peer <= 0:
        return None
    return fleet / peer if better == "higher" else peer / fleet


def round_advantages(metric: Metric, peer: str, base: str = "fleet") -> list[float]:
    """fleet's advantage over `peer` in every round where both have a value."""
    ours = metric.values.get(base, [])
    theirs = metric.values.get(peer, [])
    found = []
    for mine, other in zip(ours, theirs, strict=False):
        if mine is None or other is None:
            continue
        ratio = advantage(mine, other, metric.better)
        if ratio is not None:
            found.append(ratio)
    return found


def median_advantage(metric: Metric, peer: str, base: str = "fleet") -> float | None:
    ratios = round_advantages(metric, peer, base)
    return statistics.median(ratios) if ratios else None

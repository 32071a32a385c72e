"""The crontab field grammar: what each of a crontab's five fields accepts, and reading it.

A field takes an int, a list of ints, or cron text: `*`, `*/n`, `n`, `a-b`, `a-b/n`, `a/n`
(a to the top, every n) and comma lists of these. day_of_week takes day names (Sunday is 0
and also 7), month_of_year month names, full or three letters, in ranges too. `parse_field`
turns a field into its canonical text and its sorted values, or a ConfigError naming the
field and what was wrong. The schedule itself is `fleet.engine.schedules.crontab`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleet.operator_errors import ConfigError, closest

_DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)


def _names(full_names: tuple[str, ...], first: int) -> dict[str, int]:
    """Full names and their three-letter forms, numbered from `first`."""
    names = {}
    for number, name in enumerate(full_names, start=first):
        names[name] = number
        names[name[:3]] = number
    return names


@dataclass(frozen=True)
class Field:
    """One crontab field: its valid numbers, the names it accepts, and what `*` covers."""

    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)
    star_high: int | None = None  # day_of_week: `*` is 0-6, though 7 (Sunday again) is valid

    @property
    def top(self) -> int:
        """The highest distinct value (what `*`, `a/n` and wrapping ranges run up to)."""
        return self.high if self.star_high is None else self.star_high

    @property
    def every(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.top + 1))


FIELDS = {
    f.name: f
    for f in (
        Field("minute", 0, 59),
        Field("hour", 0, 23),
        Field("day_of_week", 0, 7, _names(_DAY_NAMES, 0), star_high=6),
        Field("day_of_month", 1, 31),
        Field("month_of_year", 1, 12, _names(_MONTH_NAMES, 1)),
    )
}


def parse_field(spec: Field, value: object) -> tuple[str, tuple[int, ...]]:
    """(canonical text, sorted values) for one field, or a ConfigError naming the field."""
    text = _field_text(spec, value)
    values: set[int] = set()
    for part in text.split(","):
        values.update(_parse_part(spec, text, part))
    if spec.star_high is not None:
        values = {spec.low if v > spec.star_high else v for v in values}  # 7 is Sunday (0)
    return text, tuple(sorted(values))


def _field_text(spec: Field, value: object) -> str:
    """The field as cron text: '5', '*/15', '1,5,9', 'mon-fri' (lower case, no spaces)."""
    if isinstance(value, str):
        return "".join(value.split()).lower()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(_in_range(spec, repr(value), value))
    if isinstance(value, Iterable):
        items = list(value)
        if all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            items = sorted(items)  # sets have no order: give describe() a stable one
        elif isinstance(value, set | frozenset):
            items = sorted(items, key=str)
        text = ",".join(_item_text(spec, value, item) for item in items)
        if text:
            return text
    raise _field_error(
        spec, value, "expected an int, a string like '*/15', '1-5' or '1,5', or a list of ints"
    )


def _item_text(spec: Field, whole: object, item: object) -> str:
    if isinstance(item, int) and not isinstance(item, bool):
        return str(_in_range(spec, repr(whole), item))
    if isinstance(item, str):
        return "".join(item.split()).lower()
    raise _field_error(spec, whole, f"{item!r} is not an int or a string")


def _parse_part(spec: Field, text: str, part: str) -> list[int]:
    """One comma-separated item: `*`, `n`, `a-b`, each optionally `/step`."""
    if not part:
        raise _field_error(spec, text, "has an empty item (two commas in a row?)")
    base, slash, step_text = part.partition("/")
    step = _parse_step(spec, text, step_text) if slash else 1
    if base == "*":
        values = list(spec.every)
    elif "-" in base:
        start, _, end = base.partition("-")
        if not start or not end:
            raise _field_error(spec, text, f"{base!r} is not a range (write a-b)")
        values = _span(spec, _value(spec, text, start), _value(spec, text, end))
    else:
        value = _value(spec, text, base)
        # `a/n` means from a to the top, every n (as cronie and Quartz read `0/15`).
        values = _span(spec, value, spec.top) if slash else [value]
    return values[::step]


def _span(spec: Field, start: int, end: int) -> list[int]:
    """start..end inclusive; a range that runs backwards wraps ('fri-mon', hour '22-2')."""
    if start <= end:
        return list(range(start, end + 1))
    return list(range(start, spec.top + 1)) + list(range(spec.low, end + 1))


def _parse_step(spec: Field, text: str, step_text: str) -> int:
    if not step_text.isdigit():
        raise _field_error(spec, text, f"step {step_text!r} is not a whole number")
    step = int(step_text)
    if step < 1:
        raise _field_error(spec, text, f"step {step} must be at least 1")
    return step


def _value(spec: Field, text: str, token: str) -> int:
    """A number or (for days and months) a name, checked against the field's range."""
    if token.isdigit():
        return _in_range(spec, repr(text), int(token))
    if token in spec.names:
        return spec.names[token]
    if not spec.names:
        raise _field_error(spec, text, f"{token!r} is not a number in range {spec.low}-{spec.high}")
    kind = "day" if spec.name == "day_of_week" else "month"
    suggestion = closest(token, list(spec.names))
    raise _field_error(
        spec, text, f"{token!r} is not a {kind} name or a number in range {spec.low}-{spec.high}",
        f"did you mean {suggestion!r}?" if suggestion else None,
    )


def _in_range(spec: Field, shown: str, number: int) -> int:
    if not spec.low <= number <= spec.high:
        raise ConfigError(
            f"crontab {spec.name}={shown}: {number} is out of range {spec.low}-{spec.high}"
        )
    return number


def _field_error(spec: Field, value: object, reason: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"crontab {spec.name}={value!r}: {reason}", hint)

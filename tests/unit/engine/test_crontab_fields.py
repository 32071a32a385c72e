"""The crontab field grammar: what each field reads, and errors that name the field."""

from __future__ import annotations

import pytest

from fleet.engine.crontab_fields import FIELDS, parse_field
from fleet.operator_errors import ConfigError


@pytest.mark.parametrize(("name", "value", "text", "values"), [
    ("minute", "*/15", "*/15", (0, 15, 30, 45)),
    ("minute", [30, 0], "0,30", (0, 30)),
    ("hour", "22-2", "22-2", (0, 1, 2, 22, 23)),
    ("hour", "9/6", "9/6", (9, 15, 21)),
    ("day_of_week", "Mon-Fri", "mon-fri", (1, 2, 3, 4, 5)),
    ("day_of_week", "7", "7", (0,)),
    ("month_of_year", "jan,Dec", "jan,dec", (1, 12)),
])
def test_fields_read_cron_text_numbers_and_names(name, value, text, values):
    assert parse_field(FIELDS[name], value) == (text, values)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("minute", 60, "60 is out of range 0-59"),
    ("hour", "1,,2", "empty item"),
    ("minute", "*/0", "step 0 must be at least 1"),
    ("day_of_week", "mnday", "did you mean"),
    ("day_of_month", "x", "'x' is not a number in range 1-31"),
    ("minute", 1.5, "expected an int"),
])
def test_a_bad_field_is_an_error_naming_the_field(name, value, message):
    with pytest.raises(ConfigError, match=f"crontab {name}=") as raised:
        parse_field(FIELDS[name], value)
    assert message in raised.value.one_line()

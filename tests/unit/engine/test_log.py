"""Node logging: level names, and every line naming the node and the process's role."""

from __future__ import annotations

import logging

import pytest

from fleet.engine.log import parse_level, setup_logging
from fleet.operator_errors import UsageError


def test_level_names_are_case_insensitive_and_a_bad_one_says_which_exist():
    assert parse_level("INFO") == logging.INFO and parse_level("warn") == logging.WARNING
    assert parse_level(logging.DEBUG) == logging.DEBUG
    with pytest.raises(UsageError):
        parse_level("loud")


def test_each_process_writes_its_own_file_with_its_name_and_role(tmp_path):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        fd = setup_logging("w1@h", "child 2", logging.INFO, str(tmp_path / "%n%I.log"), index=2)
        logging.getLogger("fleet.test").info("hello from a child")
        for handler in root.handlers:
            handler.flush()
        (written,) = tmp_path.iterdir()
        assert written.name == "w1-2.log" and fd is not None
        assert "INFO/w1@h child 2] hello from a child" in written.read_text()
    finally:
        for handler in root.handlers[:]:
            if handler not in saved[0]:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:], root.level = saved

"""fleet.toml: its sections become engine settings; unknown keys are named."""

from __future__ import annotations

import pytest

from fleet.config_file import parse_config
from fleet.operator_errors import ConfigError


def test_fleet_toml_sections_and_errors():
    config = parse_config({"app": "proj", "broker": "redis://x/0",
                           "settings": {"task_default_queue": "q"}})
    assert config.engine_settings() == {"task_default_queue": "q", "broker_url": "redis://x/0"}
    with pytest.raises(ConfigError, match="did you mean 'settings'"):
        parse_config({"setings": {}})
    with pytest.raises(ConfigError, match=r"did you mean 'settings\.result_expires'"):
        parse_config({"settings": {"result_expire": 1}})

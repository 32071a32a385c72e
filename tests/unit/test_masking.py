"""fleet.masking: a password is masked whatever it holds, at any depth of a setting, in any
argument of a command line and in any line of text (errors, logs)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.engine.settings import Settings
from fleet.masking import MASK, mask_argv, mask_text, mask_url, mask_value
from fleet.operator_errors import ConfigError, FleetError, describe_failure

passwords = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(database=None, max_examples=300)
@given(passwords, st.sampled_from(["", "user", "default"]))
def test_any_password_in_a_url_is_masked_whole(password, user):
    """`@`, `/`, `?`, `#`, `:` in a password used to leave its tail in clear."""
    url = f"redis://{user}:{password}@127.0.0.1:6379/0"
    assert mask_url(url) == f"redis://{user}:{MASK}@127.0.0.1:6379/0"


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:p@ss@host/0", f"redis://:{MASK}@host/0"),
    ("rediss://u:a/b?c#d@h:1/2", f"rediss://u:{MASK}@h:1/2"),
    ("unix:///run/redis.sock?db=0&password=s3cret", f"unix:///run/redis.sock?db=0&password={MASK}"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://user@host/0", "redis://user@host/0"),
    ("sqlite:////var/lib/fleet/broker.db", "sqlite:////var/lib/fleet/broker.db"),
    ("", ""),
])
def test_urls_show_everything_but_the_password(url, shown):
    assert mask_url(url) == shown


def test_text_masks_every_url_in_it():
    text = "cannot reach redis://:a@b@h1/0 or 'rediss://u:x@h2:1/0', nor sqlite:///x.db"
    assert mask_text(text) == (f"cannot reach redis://:{MASK}@h1/0 or 'rediss://u:{MASK}@h2:1/0',"
                               " nor sqlite:///x.db")


def test_values_are_masked_at_any_depth_and_never_changed_in_place():
    options = {"password": "pw", "sentinel_kwargs": {"password": "pw2", "socket_timeout": 1},
               "nodes": [{"url": "redis://:pw3@h/0"}, ("token", {"api_key": "k"})],
               "sasl_password": "pw4", "username": "fleet", "empty_password": ""}
    masked = mask_value(options)
    assert masked == {"password": MASK, "sentinel_kwargs": {"password": MASK, "socket_timeout": 1},
                      "nodes": [{"url": f"redis://:{MASK}@h/0"}, ("token", {"api_key": MASK})],
                      "sasl_password": MASK, "username": "fleet", "empty_password": ""}
    assert options["password"] == "pw"
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    node["password"] = "deep"
    assert "deep" not in repr(mask_value(deep))


def test_command_lines_mask_urls_secret_overrides_and_json_values():
    argv = ["python", "-m", "fleet", "worker", "--broker=redis://:a@b@h/0", "-b",
            "redis://:c@h/0", "--", 'broker_transport_options={"password": "d", "db": 1}',
            "redis_password=e", "task_acks_late=true", "x={not json"]
    assert mask_argv(argv) == ["python", "-m", "fleet", "worker", f"--broker=redis://:{MASK}@h/0",
                               "-b", f"redis://:{MASK}@h/0", "--",
                               f'broker_transport_options={{"password":"{MASK}","db":1}}',
                               f"redis_password={MASK}", "task_acks_late=true", "x={not json"]


def test_an_argument_is_one_value_so_a_password_with_a_space_is_masked_whole():
    argv = ["--broker=redis://:pa ss@h/0", "redis://:pa ss@h/0", "FLEET_BROKER_URL=redis://:p q@h"]
    assert mask_argv(argv) == [f"--broker=redis://:{MASK}@h/0", f"redis://:{MASK}@h/0",
                               f"FLEET_BROKER_URL=redis://:{MASK}@h"]


def test_signing_keys_are_secrets_and_their_file_paths_are_not():
    assert mask_argv(["FLEET_SECURITY_KEY=k1", "security_key_file=/etc/fleet/keys"]) == \
        [f"FLEET_SECURITY_KEY={MASK}", "security_key_file=/etc/fleet/keys"]


def test_settings_show_no_secret_in_urls_or_dict_settings():
    conf = Settings()
    conf.update({"broker_url": "redis://:p@ss@h/0", "result_backend": "redis://:q@h/1",
                 "broker_transport_options": {"password": "r", "socket_keepalive": True}})
    masked = conf.masked(only_changed=True)
    assert masked == {"broker_url": f"redis://:{MASK}@h/0", "result_backend": f"redis://:{MASK}@h/1",
                      "broker_transport_options": {"password": MASK, "socket_keepalive": True}}


def test_an_invalid_secret_setting_does_not_print_its_value():
    conf = Settings()
    with pytest.raises(ConfigError) as refused:
        conf.update({"result_backend": ["redis://:hunter2@h/0"]})
    assert "hunter2" not in refused.value.one_line()


def test_error_lines_and_log_lines_are_masked(caplog):
    from fleet.engine.log import MaskingFormatter

    assert "pw" not in FleetError("cannot reach redis://:pw@h/0", "check it").one_line()
    line, code = describe_failure(RuntimeError("boom at redis://:pw@h/0"))
    assert "pw@" not in line and code == 70
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "Connected to %s", ("redis://:pw@h/0",),
                               None)
    assert MaskingFormatter("%(message)s").format(record) == f"Connected to redis://:{MASK}@h/0"

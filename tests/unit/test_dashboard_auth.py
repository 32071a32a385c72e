"""Dashboard logins: where credentials come from, how they are checked, sessions, CSRF."""

from __future__ import annotations

import base64

import pytest

from fleet.dashboard.auth import (
    AUTH_ENV,
    MAX_FAILURES,
    Guard,
    Throttle,
    file_is_private,
    resolve_users,
)
from fleet.dashboard.settings import DashboardSettings, is_loopback, normalize_prefix
from fleet.operator_errors import UsageError

SECRET = b"k" * 32


def test_credentials_come_from_the_file_the_flag_or_the_environment(tmp_path):
    auth_file = tmp_path / "auth"
    auth_file.write_text("# operators\nadmin:pa:ss\n\nops:other\n")
    assert resolve_users(None, str(auth_file), {}) == {"admin": "pa:ss", "ops": "other"}
    assert resolve_users("admin:secret", None, {}) == {"admin": "secret"}
    assert resolve_users(None, None, {AUTH_ENV: "env:pw"}) == {"env": "pw"}
    assert resolve_users(None, None, {}) == {}


@pytest.mark.parametrize("bad", ["nocolon", ":nouser", "user:"])
def test_unreadable_credentials_are_usage_errors_that_never_echo_them(bad):
    with pytest.raises(UsageError) as caught:
        resolve_users(bad, None, {})
    assert caught.value.exit_code == 2 and bad not in caught.value.one_line()
    assert "USER:PASSWORD" in caught.value.one_line()


def test_auth_and_auth_file_together_are_refused(tmp_path):
    with pytest.raises(UsageError, match="cannot be used together"):
        resolve_users("a:b", str(tmp_path / "x"), {})


def test_a_missing_auth_file_is_one_clear_line(tmp_path):
    with pytest.raises(UsageError, match="cannot read --auth-file"):
        resolve_users(None, str(tmp_path / "missing"), {})


def test_a_world_readable_auth_file_is_noticed(tmp_path):
    path = tmp_path / "auth"
    path.write_text("a:b\n")
    path.chmod(0o644)
    assert not file_is_private(str(path))
    path.chmod(0o600)
    assert file_is_private(str(path))


def test_passwords_are_checked_against_every_user():
    guard = Guard({"admin": "s3cret", "ops": "other"}, SECRET)
    assert guard.check_password("admin", "s3cret") and guard.check_password("ops", "other")
    assert not guard.check_password("admin", "other")
    assert not guard.check_password("nobody", "s3cret")
    assert not guard.check_password("admin", "")


def test_basic_credentials():
    guard = Guard({"admin": "s3cret"}, SECRET)
    good = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    wrong = "Basic " + base64.b64encode(b"admin:nope").decode()
    assert guard.basic(good) == "admin"
    assert guard.basic(wrong) is None and guard.basic("Basic !!!") is None
    assert guard.basic("Bearer x") is None and guard.basic(None) is None


def test_a_session_is_signed_expires_and_ends_with_a_password_change():
    guard = Guard({"admin": "s3cret"}, SECRET)
    cookie = guard.session_cookie("admin", now=1000.0)
    assert guard.session_user(cookie, now=1001.0) == "admin"
    assert guard.session_user(cookie, now=1000.0 + 13 * 3600) is None  # expired
    name, expiry, signature = cookie.split(".")
    assert guard.session_user(f"{name}.{int(expiry) + 9999}.{signature}", now=1001.0) is None
    assert Guard({"admin": "s3cret"}, b"x" * 32).session_user(cookie, now=1001.0) is None
    assert Guard({"admin": "changed"}, SECRET).session_user(cookie, now=1001.0) is None
    assert guard.session_user("garbage", now=1001.0) is None


def test_csrf_tokens_are_per_user_and_per_secret():
    guard = Guard({"admin": "s3cret", "ops": "x"}, SECRET)
    token = guard.csrf_token("admin")
    assert guard.check_csrf("admin", token)
    assert not guard.check_csrf("ops", token)
    assert not guard.check_csrf("admin", None) and not guard.check_csrf("admin", "")
    assert not Guard({"admin": "s3cret"}, b"y" * 32).check_csrf("admin", token)


def test_logins_are_throttled_per_address():
    throttle = Throttle()
    for i in range(MAX_FAILURES):
        assert throttle.blocked("10.0.0.1", now=100.0 + i) == 0
        throttle.failed("10.0.0.1", now=100.0 + i)
    assert throttle.blocked("10.0.0.1", now=110.0) > 0
    assert throttle.blocked("10.0.0.2", now=110.0) == 0
    assert throttle.blocked("10.0.0.1", now=100.0 + 301) == 0  # the window passed


def test_listening_beyond_loopback_needs_logins():
    with pytest.raises(UsageError) as caught:
        DashboardSettings(address="0.0.0.0").check()
    assert caught.value.exit_code == 2
    assert "without authentication" in caught.value.message
    assert DashboardSettings(address="0.0.0.0", users={"a": "b"}).check()
    for address in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert is_loopback(address) and DashboardSettings(address=address).check()
    assert not is_loopback("192.168.1.10") and not is_loopback("example.org")


def test_url_prefixes_are_normalised_and_checked():
    assert normalize_prefix("fleet/") == "/fleet" and normalize_prefix("/") == ""
    assert normalize_prefix("/a/b") == "/a/b"
    with pytest.raises(UsageError):
        normalize_prefix("/x?y")

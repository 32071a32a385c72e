"""Who may use the dashboard: users and passwords, sessions, CSRF tokens, login throttling.

Passwords come from `--auth-file FILE` (one `user:password` a line), the environment
variable FLEET_DASHBOARD_AUTH (`user:password`), or `--auth user:password` (visible in `ps`:
prefer the other two). They are kept in memory only, never logged, and compared with
`hmac.compare_digest` against every configured user, so a wrong user name and a wrong
password take the same time.

A browser logs in once (POST /login) and gets a session cookie: `user.expiry.signature`,
HttpOnly, SameSite=Strict, signed with the dashboard's secret (kept in its history file,
so sessions survive a restart) and bound to the password (changing it ends the sessions).
Programs (curl, a Prometheus scraper) send HTTP Basic credentials instead.

Every state-changing request carries a CSRF token: an HMAC of the session's user under the
same secret, which only a page of the dashboard itself can read. Without authentication
(loopback only) the token is still required: any web page the operator opens could otherwise
post to 127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from fleet.operator_errors import UsageError

AUTH_ENV = "FLEET_DASHBOARD_AUTH"
SESSION_COOKIE = "fleet_dashboard_session"
SESSION_SECONDS = 12 * 3600
#: Failed logins from one address within WINDOW seconds before it must wait.
MAX_FAILURES, FAILURE_WINDOW = 5, 300.0


def parse_credential(text: str, where: str) -> tuple[str, str]:
    """'user:password' -> (user, password); the password may contain ':'."""
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise UsageError(f"cannot read the credentials in {where}",
                         "write USER:PASSWORD (neither part empty)")
    return user, password


def read_auth_file(path: str) -> dict[str, str]:
    """Users from a file: one `user:password` a line; blank lines and `#` comments skipped."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise UsageError(f"cannot read --auth-file {path}: {exc.strerror}",
                         "give a readable file with one USER:PASSWORD a line") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            user, password = parse_credential(line, f"{path} line {number}")
            users[user] = password
    if not users:
        raise UsageError(f"--auth-file {path} names no user", "add a line USER:PASSWORD")
    return users


def file_is_private(path: str) -> bool:
    """Whether only its owner can read the file (else the CLI warns)."""
    try:
        return os.stat(Path(path).expanduser()).st_mode & 0o077 == 0
    except OSError:
        return True


def resolve_users(auth: str | None, auth_file: str | None,
                  environ: dict[str, str] | None = None) -> dict[str, str]:
    """The users from --auth, --auth-file or FLEET_DASHBOARD_AUTH ({} means no login)."""
    environ = os.environ if environ is None else environ
    if auth and auth_file:
        raise UsageError("--auth and --auth-file cannot be used together", "choose one")
    if auth_file:
        return read_auth_file(auth_file)
    if auth:
        user, password = parse_credential(auth, "--auth")
        return {user: password}
    if environ.get(AUTH_ENV):
        user, password = parse_credential(environ[AUTH_ENV], AUTH_ENV)
        return {user: password}
    return {}


@dataclass
class Throttle:
    """Refuses logins from an address after MAX_FAILURES failures within FAILURE_WINDOW."""

    failures: dict[str, deque] = field(default_factory=dict)

    def blocked(self, client: str, now: float | None = None) -> float:
        """Seconds until `client` may try again (0: now)."""
        now = time.monotonic() if now is None else now
        recent = self.failures.get(client)
        if not recent:
            return 0.0
        while recent and recent[0] < now - FAILURE_WINDOW:
            recent.popleft()
        if len(recent) < MAX_FAILURES:
            return 0.0
        return recent[0] + FAILURE_WINDOW - now

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self.failures) > 10_000:  # bounded: forget the oldest addresses
            self.failures.pop(next(iter(self.failures)))
        self.failures.setdefault(client, deque(maxlen=MAX_FAILURES)).append(now)

    def succeeded(self, client: str) -> None:
        self.failures.pop(client, None)


class Guard:
    """Checks credentials, signs and verifies sessions, makes and checks CSRF tokens."""

    def __init__(self, users: dict[str, str], secret: bytes):
        self.users = dict(users)
        self.secret = secret
        self.throttle = Throttle()

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def check_password(self, user: str, password: str) -> bool:
        """Constant time in the user name and the password (every user is compared)."""
        given_user, given_password = user.encode(), password.encode()
        ok = False
        for known_user, known_password in self.users.items():
            same_user = hmac.compare_digest(known_user.encode(), given_user)
            same_password = hmac.compare_digest(known_password.encode(), given_password)
            ok |= same_user & same_password
        return ok

    def basic(self, header: str | None) -> str | None:
        """The user of a valid `Authorization: Basic ...` header, else None."""
        if not header or header[:6].lower() != "basic ":
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        return user if self.check_password(user, password) else None

    def _sign(self, *parts: str) -> str:
        message = "\x00".join(parts).encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def _binding(self, user: str) -> str:
        """Ties a session to the user's current password."""
        password = self.users.get(user, "")
        return hashlib.sha256(password.encode()).hexdigest()[:16]

    def session_cookie(self, user: str, now: float | None = None) -> str:
        expiry = str(int((time.time() if now is None else now) + SESSION_SECONDS))
        name = base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")
        return f"{name}.{expiry}.{self._sign('session', user, expiry, self._binding(user))}"

    def session_user(self, cookie: str | None, now: float | None = None) -> str | None:
        """The user of a valid, unexpired session cookie, else None."""
        if not cookie or cookie.count(".") != 2:
            return None
        name, expiry, signature = cookie.split(".")
        try:
            user = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
            expires_at = int(expiry)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if user not in self.users or expires_at < (time.time() if now is None else now):
            return None
        expected = self._sign("session", user, expiry, self._binding(user))
        return user if hmac.compare_digest(expected, signature) else None

    def csrf_token(self, user: str | None) -> str:
        """The token that state-changing requests of `user` ('' without auth) must carry."""
        return self._sign("csrf", user or "")

    def check_csrf(self, user: str | None, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(user), token or "")

"""Secrets are never printed: passwords in URLs, values under secret-looking keys, anywhere
in a setting, a command line or a line of text.

What is masked (with `********`):
* the password of any URL, `scheme://user:PASSWORD@host`, whatever it contains: the user
  part ends at the *last* `@` of the URL, as URL parsers read it (a password with `@`, `/`,
  `?` or `#` in it used to leak its tail), and a `password=` query parameter;
* in dicts and lists (settings such as `broker_transport_options`), the value of every key
  that names a secret (password, passwd, secret, token, credential(s), api key, security/signing
  key, auth, sasl password...), and every URL anywhere in them;
* in command lines (`fleet multi show/get`), each argument as text, and `NAME=VALUE`
  overrides whose VALUE is JSON or whose NAME names a secret.

This module is a leaf (no fleet imports): the operator errors, the engine's reports and
settings, the node's log lines and the multi controller all mask through it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MASK = "********"
#: How deep masking follows nested dicts and lists; anything deeper is masked whole.
MAX_DEPTH = 32

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_QUERY_PASSWORD = re.compile(r"(?i)([?&;](?:password|passwd|pass|secret|token)=)[^&;#\s]*")
_SECRET_KEY = re.compile(
    r"(?i)(pass(word|wd|phrase)?|secret|token|credentials?|api[_-]?key|auth|"
    r"private[_-]?key|(security|signing|hmac)[_-]?keys?|sasl)(?![a-z]|_(file|path)s?(?![a-z]))")
_ASSIGNMENT = re.compile(r"(?s)(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<value>.*)")


def mask_url(url: str | None) -> str:
    """`redis://:secret@host/0` -> `redis://:********@host/0`; no password: unchanged."""
    if not url:
        return ""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        rest = f"{user}:{MASK}@{host}"
    return _QUERY_PASSWORD.sub(lambda found: found.group(1) + MASK, f"{scheme}://{rest}")


def mask_text(text: str) -> str:
    """Every URL in free text (an error message, a log line) with its password masked."""
    if "://" not in text:
        return text
    return _URL.sub(lambda found: mask_url(found.group(0)), text)


def is_secret_key(key: Any) -> bool:
    """True for a key that names a secret: `password`, `sasl_password`, `api_key`, ..."""
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def mask_value(value: Any, depth: int = 0) -> Any:
    """`value` with every secret in it masked: secret keys of dicts (at any depth), URLs in
    strings. Containers are copied, never changed in place."""
    if depth > MAX_DEPTH:
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: (MASK if is_secret_key(key) and item not in (None, "") else
                      mask_value(item, depth + 1)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_value(item, depth + 1) for item in value)
    return value


def mask_argument(argument: str) -> str:
    """One command-line argument: URLs masked, and `NAME=VALUE` overrides (after `--`) whose
    NAME names a secret, or whose VALUE is a JSON container holding one. An argument is one
    value, so a URL in it is masked whole even when its password holds a space."""
    found = _ASSIGNMENT.fullmatch(argument)
    if found and not argument.startswith("-"):
        return _mask_assignment(found.group("name"), found.group("value"))
    option, equals, value = argument.partition("=")
    if argument.startswith("-") and equals and _URL.match(value):
        return f"{option}={mask_url(value)}"
    return mask_url(argument) if _URL.match(argument) else mask_text(argument)


def _mask_assignment(name: str, value: str) -> str:
    if is_secret_key(name) and value:
        return f"{name}={MASK}"
    if value[:1] in ("{", "["):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return mask_text(f"{name}={value}")
        return f"{name}={json.dumps(mask_value(parsed), separators=(',', ':'))}"
    return f"{name}={mask_url(value) if _URL.match(value) else mask_text(value)}"


def mask_argv(argv: list[str] | tuple[str, ...]) -> list[str]:
    """A command line fit to print: every argument masked (`mask_argument`)."""
    return [mask_argument(argument) for argument in argv]

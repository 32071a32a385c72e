"""Celery's setting names, and what fleet does with each: read it as fleet's own name for the
same thing (with one warning naming that name), or refuse it, listing every such name at once.
A Celery name is never ignored silently.

Celery names come in two forms, both recognised wherever settings come from (an app's
`conf`, `config_from_object`, fleet.toml, `FLEET_*` variables):

* the old uppercase names of Celery before 4.0 (`BROKER_URL`, `CELERY_RESULT_BACKEND`,
  `CELERYD_CONCURRENCY`, `CELERYBEAT_SCHEDULE`, ...), from Celery's own table of old and new
  names (its configuration guide, "New lowercase settings");
* the lowercase names of Celery 4+ that fleet lacks (`task_serializer`, `accept_content`,
  ...), and those names with Celery's Django prefix (`CELERY_BROKER_URL`,
  `CELERY_TASK_ALWAYS_EAGER`).

A Celery name whose setting fleet has under the same name (`broker_url`, `timezone`, ...)
maps to it; a few map to another name (`imports` -> `include`); the rest are refused, each
with the reason when there is a short one (`fleet upgrade settings FILE` rewrites a settings
module: renames the first, comments out the second).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleet.exceptions import CeleryNameWarning
from fleet.operator_errors import ConfigError

# -- Celery's names (facts about Celery, written as data) --------------------------------------

#: Celery 4+ settings by group: (prefix of the new names, prefix of the old names, keys).
#: Old name = old prefix + key, uppercase; new name = new prefix + key.
_GROUPS: tuple[tuple[str, str | None, str], ...] = (
    ("", "CELERY_", "accept_content imports include timezone enable_utc"),
    ("", None, "result_accept_content"),
    ("beat_", "CELERYBEAT_", "max_loop_interval schedule scheduler schedule_filename "
                             "sync_every cron_starting_deadline"),
    ("broker_", "BROKER_", "url read_url write_url transport transport_options "
                           "connection_timeout connection_retry connection_retry_on_startup "
                           "connection_max_retries channel_error_retry failover_strategy "
                           "heartbeat heartbeat_checkrate login_method pool_limit use_ssl host "
                           "port user password vhost native_delayed_delivery_queue_type"),
    ("cache_", "CELERY_CACHE_", "backend backend_options"),
    ("event_", "CELERY_EVENT_", "queue_expires queue_ttl queue_prefix queue_durable "
                                "queue_exclusive serializer exchange"),
    ("redis_", "CELERY_REDIS_", "backend_use_ssl db host max_connections username password "
                                "port socket_timeout socket_connect_timeout retry_on_timeout "
                                "socket_keepalive"),
    ("result_", "CELERY_RESULT_", "backend cache_max compression exchange exchange_type "
                                  "expires persistent extended serializer "
                                  "backend_transport_options chord_retry_interval "
                                  "chord_join_timeout backend_always_retry backend_max_retries"),
    ("security_", "CELERY_SECURITY_", "certificate cert_store key key_password digest"),
    ("mongodb_", "CELERY_MONGODB_", "backend_settings"),
    ("couchbase_", "CELERY_COUCHBASE_", "backend_settings"),
    ("arangodb_", "CELERY_ARANGODB_", "backend_settings"),
    ("elasticsearch_", "CELERY_ELASTICSEARCH_", "retry_on_timeout max_retries timeout "
                                                "save_meta_as_text"),
    ("database_", None, "url engine_options short_lived_sessions table_schemas table_names "
                        "create_tables_at_setup"),
    ("control_", None, "queue_ttl queue_expires exchange"),
    ("task_", "CELERY_", "acks_late acks_on_failure_or_timeout always_eager annotations "
                         "compression create_missing_queues inherit_parent_priority "
                         "default_delivery_mode default_queue default_queue_type "
                         "default_exchange default_exchange_type default_routing_key "
                         "default_rate_limit default_priority eager_propagates ignore_result "
                         "store_eager_result protocol publish_retry publish_retry_policy queues "
                         "queue_max_priority reject_on_worker_lost remote_tracebacks routes "
                         "send_sent_event serializer soft_time_limit time_limit "
                         "store_errors_even_if_ignored track_started "
                         "allow_error_cb_on_chord_header"),
    ("worker_", "CELERYD_", "agent autoscaler cancel_long_running_tasks_on_connection_loss "
                            "soft_shutdown_timeout enable_soft_shutdown_on_idle concurrency "
                            "consumer direct disable_rate_limits deduplicate_successful_tasks "
                            "enable_remote_control hijack_root_logger log_color log_format "
                            "lost_wait max_memory_per_child max_tasks_per_child pool "
                            "pool_putlocks pool_restarts proc_alive_timeout "
                            "prefetch_multiplier enable_prefetch_count_reduction "
                            "redirect_stdouts redirect_stdouts_level send_task_events state_db "
                            "task_log_format timer timer_precision detect_quorum_queues "
                            "eta_task_limit"),
)

#: Old names that do not follow their group's rule (Celery's table lists both spellings of
#: several, so both are here).
_RENAMED_OLD = {
    "ENABLE_UTC": "enable_utc",
    "CELERY_MAX_CACHED_RESULTS": "result_cache_max",
    "CELERY_TASK_RESULT_EXPIRES": "result_expires",
    "CELERY_MESSAGE_COMPRESSION": "task_compression",
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS": "task_eager_propagates",
    "CELERY_TASK_PROTOCOL": "task_protocol",
    "CELERY_TASK_PUBLISH_RETRY": "task_publish_retry",
    "CELERY_TASK_PUBLISH_RETRY_POLICY": "task_publish_retry_policy",
    "CELERY_SEND_TASK_SENT_EVENT": "task_send_sent_event",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERYD_TASK_SOFT_TIME_LIMIT": "task_soft_time_limit",
    "CELERYD_TASK_TIME_LIMIT": "task_time_limit",
    "CELERYD_SOFT_TIME_LIMIT": "task_soft_time_limit",
    "CELERYD_TIME_LIMIT": "task_time_limit",
    "CELERY_TASK_ALWAYS_EAGER": "task_always_eager",
    "CELERY_SEND_SENT_EVENT": "task_send_sent_event",
    "CELERY_TASK_TRACK_STARTED": "task_track_started",
    "CELERY_TASK_REJECT_ON_WORKER_LOST": "task_reject_on_worker_lost",
    "CELERY_WORKER_DIRECT": "worker_direct",
    "CELERY_DISABLE_RATE_LIMITS": "worker_disable_rate_limits",
    "CELERY_ENABLE_REMOTE_CONTROL": "worker_enable_remote_control",
    "CELERYD_WORKER_LOST_WAIT": "worker_lost_wait",
    "CELERY_REDIRECT_STDOUTS": "worker_redirect_stdouts",
    "CELERY_REDIRECT_STDOUTS_LEVEL": "worker_redirect_stdouts_level",
    "CELERY_SEND_EVENTS": "worker_send_task_events",
    "CELERY_WORKER_LOG_FORMAT": "worker_log_format",
    "CELERY_WORKER_TASK_LOG_FORMAT": "worker_task_log_format",
    "CELERY_RESULT_DBURI": "database_url",
    "CELERY_RESULT_ENGINE_OPTIONS": "database_engine_options",
    "CELERY_RESULT_DB_SHORT_LIVED_SESSIONS": "database_short_lived_sessions",
    "CELERY_RESULT_DB_TABLENAMES": "database_table_names",
}


def _tables() -> tuple[dict[str, str], frozenset[str]]:
    old_names: dict[str, str] = {}
    new_names: set[str] = set()
    for new_prefix, old_prefix, keys in _GROUPS:
        for key in keys.split():
            new_names.add(new_prefix + key)
            if old_prefix is not None:
                old_names[(old_prefix + key).upper()] = new_prefix + key
    old_names.update(_RENAMED_OLD)
    new_names.update(_RENAMED_OLD.values())
    return old_names, frozenset(new_names)


#: Celery's old uppercase name -> its Celery 4+ name; and every Celery 4+ name.
OLD_NAMES, CELERY_NAMES = _tables()

# -- what fleet does with them -----------------------------------------------------------------

#: Celery 4+ names that fleet reads under another name (the rest map to the same name, when
#: fleet has it).
FLEET_NAME = {"imports": "include"}

_JSON = "fleet messages and results are always JSON"
_BROKER_URL = "put it in broker_url"
_NO_EXCHANGES = "fleet routes to queues by name (task_routes); there are no exchanges"
_LOGGING = "connect fleet.hooks.setup_logging to set logging up yourself"
_RESULTS = "results go to the broker's store, or to result_backend (a Redis or SQLite URL)"

#: Why fleet has no equivalent, for the Celery names people set most.
REASONS: dict[str, str] = {
    "accept_content": _JSON, "result_accept_content": _JSON, "task_serializer": _JSON,
    "result_serializer": _JSON, "event_serializer": _JSON,
    "enable_utc": "fleet always keeps times as UTC; `timezone` says how naive datetimes "
                  "and crontabs are read",
    "task_always_eager": "call the task (add(2, 2)) to run it here and now",
    "task_eager_propagates": "call the task (add(2, 2)) to run it here and now",
    "task_create_missing_queues": "queues exist as soon as a message is sent to them",
    "task_queues": "a node consumes the queues given with -Q",
    "task_default_exchange": _NO_EXCHANGES, "task_default_exchange_type": _NO_EXCHANGES,
    "task_default_routing_key": _NO_EXCHANGES, "task_default_delivery_mode": _NO_EXCHANGES,
    "broker_connection_retry": "a node always retries; broker_connection_max_retries "
                               "bounds it at start",
    "broker_connection_retry_on_startup": "broker_connection_max_retries bounds retrying at "
                                          "start",
    "broker_use_ssl": "use a rediss:// URL", "broker_host": _BROKER_URL,
    "broker_port": _BROKER_URL, "broker_user": _BROKER_URL, "broker_password": _BROKER_URL,
    "broker_vhost": _BROKER_URL, "broker_transport": _BROKER_URL,
    "broker_pool_limit": "each process keeps one connection per broker",
    "broker_heartbeat": "nodes heartbeat every worker_heartbeat_interval",
    "worker_hijack_root_logger": _LOGGING, "worker_log_format": _LOGGING,
    "worker_task_log_format": _LOGGING, "worker_log_color": _LOGGING,
    "worker_redirect_stdouts": _LOGGING, "worker_redirect_stdouts_level": _LOGGING,
    "worker_pool": "use fleet worker --pool",
    "worker_state_db": "revokes are kept in the broker (task_revoke_expires)",
    "worker_enable_remote_control": "remote control is always on",
    "worker_autoscaler": "use worker_autoscale = 'MAX,MIN' or --autoscale",
    "beat_scheduler": "beat keeps its state in the broker",
    "beat_schedule_filename": "beat keeps its state in the broker",
    "beat_sync_every": "beat keeps its state in the broker",
    "result_persistent": _RESULTS, "result_extended": _RESULTS, "result_cache_max": _RESULTS,
    "result_compression": _RESULTS, "cache_backend": _RESULTS, "database_url": _RESULTS,
}


@dataclass(frozen=True)
class CeleryName:
    """What a name given as a setting is, if it is one of Celery's."""

    given: str  #: as written: "BROKER_URL"
    celery: str  #: Celery's 4+ name: "broker_url"
    fleet: str | None  #: fleet's name for it, or None: refused

    @property
    def reason(self) -> str:
        return REASONS.get(self.celery, "fleet has no equivalent")


def lookup(name: str, known: Mapping[str, Any] | frozenset[str]) -> CeleryName | None:
    """`name` as one of Celery's names (old uppercase, CELERY_-prefixed, or a 4+ name fleet
    does not have), or None when it is not one. `known` is fleet's own settings."""
    upper = name.upper()
    if name == upper:
        celery = OLD_NAMES.get(upper)
        if celery is None and upper.startswith("CELERY_") and upper[7:].lower() in CELERY_NAMES:
            celery = upper[7:].lower()
    elif name in CELERY_NAMES and name not in known:
        celery = name
    else:
        return None
    if celery is None:
        return None
    fleet = FLEET_NAME.get(celery, celery)
    return CeleryName(name, celery, fleet if fleet in known else None)


def translate(values: Mapping[str, Any], known: Mapping[str, Any] | frozenset[str],
              where: str = "", spelled: str = "{}") -> dict[str, Any]:
    """`values` with Celery's names replaced by fleet's (one `CeleryNameWarning` each);
    a ConfigError listing every Celery name fleet has no equivalent for.

    `spelled` says how fleet's names are written in this source, for the warning
    ("FLEET_{}" for Django settings and the environment: the name goes in uppercase). A
    fleet name given as well wins over the Celery name for it.
    """
    result, refused = partition(values, known, where, spelled)
    if refused:
        raise refused_error(refused, where)
    return result


def partition(values: Mapping[str, Any], known: Mapping[str, Any] | frozenset[str],
              where: str = "", spelled: str = "{}") -> tuple[dict[str, Any], list[CeleryName]]:
    """`translate` that returns the refused names instead of raising (`fleet config check`
    lists every problem)."""
    result: dict[str, Any] = {}
    mapped: dict[str, Any] = {}
    refused: list[CeleryName] = []
    for name, value in values.items():
        found = lookup(name, known) if name not in known else None
        if found is None:
            result[name] = value
        elif found.fleet is None:
            refused.append(found)
        else:
            shown = spelled.format(found.fleet if spelled == "{}" else found.fleet.upper())
            warnings.warn(f"{where}{name} is Celery's name for {shown}: read as {shown} "
                          "(rename it; `fleet upgrade settings FILE` does it for a module)",
                          CeleryNameWarning, stacklevel=_callers_level())
            _merge(mapped, found.fleet, value)
    return {**mapped, **result}, refused


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _callers_level() -> int:
    """The `stacklevel` of the first caller outside fleet (the user's `config_from_object`,
    `Fleet(...)`), so a warning points there and is shown once per place and name."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def _merge(mapped: dict[str, Any], name: str, value: Any) -> None:
    """Two Celery names for one list setting (`imports` and `include`) add up."""
    if name in mapped and isinstance(mapped[name], list | tuple) and \
            isinstance(value, list | tuple):
        mapped[name] = [*mapped[name], *value]
    else:
        mapped[name] = value


def refused_error(names: list[CeleryName], where: str = "") -> ConfigError:
    listed = "; ".join(f"{found.given} ({found.reason})" for found in names)
    return ConfigError(
        f"{where}Celery setting(s) fleet has no equivalent for: {listed}",
        "remove them (`fleet upgrade settings FILE` comments them out of a settings module); "
        "the README's \"Coming from Celery\" maps every difference")

"""Task states, as stored in results and shown by `fleet result` and `AsyncResult.state`."""

PENDING = "PENDING"  #: not known yet: waiting, or an unknown id, or the result expired
RECEIVED = "RECEIVED"  #: a node reserved it (only reported by events)
STARTED = "STARTED"  #: running (stored only when the task tracks started)
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
RETRY = "RETRY"  #: failed and will be tried again
REVOKED = "REVOKED"  #: cancelled before or while it ran

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY})
EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})
ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED})

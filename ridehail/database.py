"""PostgreSQL that never makes anything wait long: connection options, and a bounded wait for answers.

Refused connections fail fast by themselves; a stalled server or a partition does not: the socket
stays open and a query waits for as long as it lasts (the kernel gives up after ~15 minutes). So:

- libpq's `connect_timeout` bounds connecting, and the pool's `timeout` waiting for a connection;
- the server ends a statement after `statement_timeout`, and a session left idle inside a
  transaction (a client frozen while holding row locks) after `idle_in_transaction_session_timeout`;
- TCP keepalives and `tcp_user_timeout` let the kernel notice a peer that vanished;
- and, for a server that accepts bytes and answers nothing (the case none of those cover: its
  kernel acknowledges every byte), `BoundedConnection` waits at most the statement timeout plus
  ANSWER_MARGIN for any answer, then closes the connection and raises OperationalError, which
  requests turn into a 503 (ridehail/web/http.py) and workers into a backoff (ridehail/events/runner.py).

SQLite is local: none of this applies to it.
"""

from typing import Any

import psycopg
from django.conf import settings

# The server's own "canceling statement due to statement timeout" needs a moment to arrive; the
# client gives up only after that, so a slow query gets the server's error, not a closed socket.
ANSWER_MARGIN = 1.0

# Kernel keepalives on idle pooled connections: a vanished peer is noticed within about
# IDLE + INTERVAL * COUNT seconds instead of never.
KEEPALIVES_IDLE, KEEPALIVES_INTERVAL, KEEPALIVES_COUNT = 10, 3, 3


def answer_timeout() -> float:
    """How long any round trip to PostgreSQL may take before the connection is given up."""
    return settings.RIDEHAIL_DB_STATEMENT_TIMEOUT + ANSWER_MARGIN


def postgresql_options(*, connect_timeout: int, statement_timeout: float, idle_in_transaction_timeout: float) -> dict:
    """libpq connection parameters (psycopg passes them through) that bound every wait on the server."""
    statement_ms, idle_ms = round(statement_timeout * 1000), round(idle_in_transaction_timeout * 1000)
    return {
        "connect_timeout": connect_timeout,
        "options": f"-c statement_timeout={statement_ms} -c idle_in_transaction_session_timeout={idle_ms}",
        "keepalives": 1,
        "keepalives_idle": KEEPALIVES_IDLE,
        "keepalives_interval": KEEPALIVES_INTERVAL,
        "keepalives_count": KEEPALIVES_COUNT,
        # Sent data unacknowledged this long (a partition in the middle of a query): the kernel drops the link.
        "tcp_user_timeout": round((statement_timeout + ANSWER_MARGIN) * 1000),
    }


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose every round trip (query, fetch, commit, the pool's check) is bounded.

    psycopg routes them all through `wait`; since 3.3 it takes a timeout and raises its internal
    `_WaitTimeout`, which its docstring asks callers to convert to a public error: done here. The
    connection is closed first (it is in the middle of the protocol), so the pool discards it.
    """

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        limit = answer_timeout() if timeout is None else timeout
        try:
            return super().wait(gen, interval, limit)
        except psycopg.errors._WaitTimeout:
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"PostgreSQL did not answer within {limit:g}s (RIDEHAIL_DB_STATEMENT_TIMEOUT + {ANSWER_MARGIN:g}s); "
                "connection closed"
            ) from None

"""PostgreSQL access with pg8000 (pure Python, so the Lambda needs no native build).

One connection per process, reused across Lambda invocations and worker jobs. Work is
handed in as a function that runs inside one transaction; if the connection turns out
to be dead (idle timeout, failover, pg_terminate_backend) the transaction is run again
once on a fresh connection, which is safe because nothing of it was committed.

H2: only an error the server reported (an ErrorResponse with a SQLSTATE) leaves the
connection in a known state, and only then is it rolled back and kept. Any other error in
the middle of a transaction (the driver failing to encode a parameter after writing half a
message, a socket timeout, a bug in the work function, an interrupt) may leave the protocol
out of step with the server, so the connection is closed and the next transaction opens a
new one: no request can see, or commit, another request's state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from services.common.secrets import CredentialsError, DbCredentialProvider, DbCredentials
from services.common.settings import DatabaseSettings, SslMode

if TYPE_CHECKING:
    import ssl

    import pg8000.dbapi
    from pg8000.exceptions import DatabaseError

log = logging.getLogger(__name__)
T = TypeVar("T")

_AUTH_FAILURE_CODES = frozenset({"28P01", "28000"})
# admin_shutdown (pg_terminate_backend), crash_shutdown, cannot_connect_now, too many clients
_UNAVAILABLE_CODES = frozenset({"57P01", "57P02", "57P03", "53300"})
_LOST_CONNECTION_MESSAGES = ("network error", "connection is closed", "communication error")
# Services answer requests and jobs: a statement slower than this is a fault. Migrations
# (DDL on a growing table, waiting for the advisory lock) get their own, longer limit.
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 8.0
# pg8000's timeout covers every socket read: it must outlast the server's statement timeout
# by this much, so a slow statement is cancelled by the server (a clean error) rather than
# looking like a dead connection to the client.
_SOCKET_MARGIN_SECONDS = 2.0


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached right now; retrying later may succeed."""


class DatabaseAuthError(DatabaseUnavailable):
    """The server rejected the credentials, even after fetching them again."""


def _pg8000_errors() -> tuple[type[Exception], type[Exception]]:
    """(DatabaseError, InterfaceError). pg8000 is imported when first needed, not with this
    module: it costs about 0.1 s of the API function's cold start."""
    from pg8000.exceptions import DatabaseError, InterfaceError

    return DatabaseError, InterfaceError


def sqlstate(error: BaseException) -> str | None:
    DatabaseError, _ = _pg8000_errors()
    if isinstance(error, DatabaseError) and error.args and isinstance(error.args[0], dict):
        return error.args[0].get("C")
    return None


def _timed_out(error: BaseException) -> bool:
    """The server did not answer within the socket timeout (pg8000 wraps the socket's
    TimeoutError in InterfaceError("network error"))."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_connection_lost(error: BaseException) -> bool:
    if isinstance(error, OSError):  # pg8000 lets some socket errors through unwrapped
        return True
    _, InterfaceError = _pg8000_errors()
    if isinstance(error, InterfaceError):
        text = str(error).lower()
        return any(message in text for message in _LOST_CONNECTION_MESSAGES)
    code = sqlstate(error)
    return code is not None and (code.startswith("08") or code in _UNAVAILABLE_CODES)


def ssl_context_for(settings: DatabaseSettings) -> ssl.SSLContext | bool:
    # pg8000 takes None as "try TLS without checks"; only False means no TLS at all.
    if settings.ssl_mode == SslMode.DISABLE:
        return False
    import ssl

    context = ssl.create_default_context(cafile=settings.ssl_root_cert)
    if settings.ssl_mode == SslMode.REQUIRE:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Database:
    def __init__(
        self,
        settings: DatabaseSettings,
        credentials: DbCredentialProvider,
        *,
        application_name: str,
        connect_timeout: float = 10.0,
        statement_timeout_seconds: float = DEFAULT_STATEMENT_TIMEOUT_SECONDS,
        socket_timeout: float | None = None,
    ) -> None:
        """`socket_timeout` (connecting and every reply) defaults to the statement timeout
        plus a margin, and at least `connect_timeout`; a caller with a time budget (the API
        function) gives its own, which must outlast the statement timeout."""
        self._settings = settings
        self._credentials = credentials
        self._application_name = application_name
        self._statement_timeout_ms = str(int(statement_timeout_seconds * 1000))
        # One socket timeout bounds connecting, each reply and so each statement: a hung
        # server (H4) costs a caller at most this once per transaction.
        if socket_timeout is None:
            socket_timeout = statement_timeout_seconds + _SOCKET_MARGIN_SECONDS
            socket_timeout = max(connect_timeout, socket_timeout)
        elif socket_timeout <= statement_timeout_seconds:
            raise ValueError("socket_timeout must outlast statement_timeout_seconds")
        self._timeout = socket_timeout
        self._ssl_context = ssl_context_for(settings)
        self._connection: pg8000.dbapi.Connection | None = None

    def run(self, work: Callable[[Any], T]) -> T:
        """Run `work(cursor)` in one transaction and commit; retry once on a lost connection."""
        for attempt in (1, 2):
            connection = self._connected()
            try:
                result = work(connection.cursor())
                connection.commit()
                return result
            except BaseException as error:
                if not _is_connection_lost(error):
                    self._end_failed_transaction(connection, error)
                    raise
                self._discard()
                if _timed_out(error):
                    # H4: a server that accepts and never answers would only make a second
                    # attempt cost the caller another full timeout.
                    raise DatabaseUnavailable(
                        f"database did not answer within {self._timeout:g} s"
                    ) from error
                if attempt == 2:
                    raise DatabaseUnavailable(f"database connection lost: {error}") from error
                log.warning(
                    "database connection lost; retrying on a new one", extra={"error": str(error)}
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def run_script(self, work: Callable[[pg8000.dbapi.Connection], T]) -> T:
        """Give `work` the raw connection inside a transaction (multi-statement DDL)."""
        connection = self._connected()
        try:
            connection.cursor().execute("SELECT 1")  # opens the transaction block
            result = work(connection)
            connection.commit()
            return result
        except BaseException as error:
            if _is_connection_lost(error):
                self._discard()
                raise DatabaseUnavailable(f"database connection lost: {error}") from error
            self._end_failed_transaction(connection, error)
            raise

    def close(self) -> None:
        self._discard()

    def _connected(self) -> pg8000.dbapi.Connection:
        if self._connection is None:
            self._connection = self._open()
        return self._connection

    def _open(self) -> pg8000.dbapi.Connection:
        DatabaseError, InterfaceError = _pg8000_errors()
        try:
            credentials = self._credentials.current()
            try:
                return self._connect(credentials)
            except DatabaseError as error:
                if sqlstate(error) not in _AUTH_FAILURE_CODES:
                    raise
                return self._reconnect_with_fresh_credentials(error)
        except CredentialsError as error:
            raise DatabaseUnavailable(f"database credentials unavailable: {error}") from error
        except (InterfaceError, OSError) as error:
            if _timed_out(error):
                raise DatabaseUnavailable(
                    f"database did not answer within {self._timeout:g} s"
                ) from error
            raise DatabaseUnavailable(f"cannot connect to the database: {error}") from error
        except DatabaseError as error:
            if _is_connection_lost(error):
                raise DatabaseUnavailable(f"database refused the connection: {error}") from error
            raise

    def _reconnect_with_fresh_credentials(self, rejected: DatabaseError) -> pg8000.dbapi.Connection:
        DatabaseError, _ = _pg8000_errors()
        log.warning("database rejected the credentials; fetching them again")
        if not self._credentials.refresh():
            raise DatabaseAuthError(f"database rejected the credentials: {rejected}") from rejected
        try:
            return self._connect(self._credentials.current())
        except DatabaseError as error:
            if sqlstate(error) in _AUTH_FAILURE_CODES:
                raise DatabaseAuthError(f"database rejected fresh credentials: {error}") from error
            raise

    def _connect(self, credentials: DbCredentials) -> pg8000.dbapi.Connection:
        import pg8000.dbapi

        return pg8000.dbapi.connect(
            user=credentials.username,
            password=credentials.password,
            host=self._settings.host,
            port=self._settings.port,
            database=self._settings.name,
            ssl_context=self._ssl_context,
            timeout=self._timeout,
            application_name=self._application_name,
            startup_params={"statement_timeout": self._statement_timeout_ms},
        )

    def _end_failed_transaction(
        self, connection: pg8000.dbapi.Connection, error: BaseException
    ) -> None:
        """Roll back after an error the server reported; discard after any other (H2)."""
        if sqlstate(error) is None:
            log.warning(
                "discarding the database connection after a client-side error",
                extra={"error": type(error).__name__},
            )
            self._discard()
            return
        try:
            connection.rollback()
        except Exception:
            self._discard()

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                log.debug("closing a broken database connection failed", exc_info=True)

"""Database engine and sessions for SQLite (embedded default) and Postgres.

SQLite runs in WAL mode with foreign keys on and a busy timeout, so the API, the
scheduler and the inbox worker can share one file. Postgres goes through psycopg 3
with pre-ping so a restarted server is reconnected transparently.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool
from sqlalchemy.types import UserDefinedType
from sqlmodel import Session, create_engine

from .config import normalize_database_url
from .exceptions import StartupError
from .pgarray import text_array


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """Create an engine with the right per-backend settings."""
    url = normalize_database_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=NullPool if database in (None, "", ":memory:") else None,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def check_connection(engine: Engine) -> None:
    """Raise StartupError with a one-line reason when the database is unreachable."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        shown = make_url(str(engine.url)).render_as_string(hide_password=True)
        raise StartupError(f"cannot reach the database at {shown}: {reason}") from exc


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session committed on success and rolled back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def pipeline(session: Session) -> Iterator[None]:
    """Send the writes inside without waiting for each reply, one round trip in all
    (Postgres: psycopg's pipeline mode; elsewhere a no-op).

    Only for statements whose results nobody reads (``INSERT``/``UPDATE``/``DELETE`` without
    ``RETURNING``): a result is not there until the block ends, and an error surfaces there,
    failing the transaction as it would have anyway. ORM-pending objects are flushed first,
    outside the pipeline (the unit of work checks row counts)."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    import psycopg

    session.flush()
    raw: Any = session.connection().connection.driver_connection
    try:
        with raw.pipeline():
            yield
    except psycopg.Error as exc:
        # An error the pipeline's final sync surfaced comes raw from the driver; callers
        # tell retryable ones (deadlock, serialization) from others by SQLAlchemy's classes.
        raise DBAPIError.instance(None, None, exc, psycopg.Error) from exc


class TextArray(UserDefinedType[Collection[str]]):
    """A list of strings bound as one array literal typed ``varchar[]`` (Postgres): psycopg
    would dump a list element by element in Python, a measurable share of a sweep page's
    client time; a string join costs a fraction. The bind renders as ``$1::VARCHAR[]``, so
    the server reads the literal once, as the parameter's value (a ``CAST`` of a text
    parameter would be evaluated again for every row ``= ANY`` tests)."""

    cache_ok = True
    render_bind_cast = True

    def get_col_spec(self, **_: Any) -> str:
        return "VARCHAR[]"

    def bind_processor(self, dialect: Any) -> Callable[[Collection[str] | None], str | None]:
        def process(value: Collection[str] | None) -> str | None:
            if isinstance(value, str):  # a collection of characters: surely a mistake
                raise TypeError("TextArray binds a collection of strings, not a string")
            return None if value is None else text_array(value)

        return process


def any_of(dialect: str, column: Any, name: str) -> ColumnElement[bool]:
    """:func:`one_of` for a statement built once and executed many times: the values come
    at execution, as the list parameter ``name``. Postgres binds one array (one statement
    text for every count); SQLite expands ``IN`` per count."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=TextArray()))  # type: ignore[no-any-return]
    return column.in_(bindparam(name, expanding=True))  # type: ignore[no-any-return]


def one_of(session: Session, column: Any, values: Collection[str]) -> ColumnElement[bool]:
    """``column IN values`` that stays one short statement on Postgres: ``= ANY(array)``
    binds a single array where ``IN`` expands into one parameter per value (a new statement
    text for every batch size, which the driver and the server parse afresh)."""
    wanted = sorted(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, wanted, type_=TextArray()))  # type: ignore[no-any-return]
    return column.in_(wanted)  # type: ignore[no-any-return]

"""Who runs the cluster-wide jobs, and the guards that keep replicas from stepping on each other.

On Postgres every replica competes for one row in ``lease``: the holder renews it every
``lease_renew_s`` and a follower takes it once it has not been renewed for ``lease_ttl_s``.
Expiry is judged by the database clock, so replicas with skewed clocks still agree. A leader
trusts its lease only until ``lease_ttl_s - lease_renew_s`` after the renewal started (monotonic
clock): a stalled leader stops starting jobs before anyone else can take over.

SQLite allows one daemon only (an exclusive ``flock`` on a file next to the database), which
is then the leader. Webhook ingestion and the API never need leadership.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from .config import SchedulerSettings
from .exceptions import StartupError

log = structlog.get_logger(__name__)

LEADER_LEASE = "scheduler"
# Arbitrary constant naming the start-up (migrate + catalog apply) lock among advisory locks.
STARTUP_LOCK = 0x5C0D_57A7

_ACQUIRE = text(
    """
    INSERT INTO lease (name, holder, expires_at, acquired_at)
    VALUES (:name, :holder, now() + make_interval(secs => :ttl), now())
    ON CONFLICT (name) DO UPDATE
      SET holder = excluded.holder,
          expires_at = excluded.expires_at,
          acquired_at = CASE WHEN lease.holder = excluded.holder
                             THEN lease.acquired_at ELSE excluded.acquired_at END
      WHERE lease.holder = excluded.holder OR lease.expires_at < now()
    RETURNING holder
    """
)
_RELEASE = text("DELETE FROM lease WHERE name = :name AND holder = :holder")


def new_holder_id() -> str:
    """This process, recognisably: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leadership:
    """The lease loop of one replica. ``is_leader`` is cheap and thread-safe."""

    def __init__(
        self,
        engine: Engine,
        settings: SchedulerSettings,
        *,
        holder: str | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.engine = engine
        self.ttl = settings.lease_ttl_s
        self.renew_every = settings.lease_renew_s
        self.holder = holder or new_holder_id()
        self._single = engine.dialect.name != "postgresql"  # SQLite: the only daemon leads
        self._valid_until = 0.0  # monotonic deadline of the lease we hold
        self._leader = False
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        if self._single:
            return True
        return self._leader and time.monotonic() < self._valid_until

    @property
    def role(self) -> str:
        return "leader" if self.is_leader else "follower"

    def renew(self) -> bool:
        """Acquire or renew the lease once; returns whether this replica leads now."""
        if self._single:
            return True
        started = time.monotonic()
        try:
            with self.engine.begin() as conn:
                won = (
                    conn.execute(_ACQUIRE, {"name": LEADER_LEASE, "holder": self.holder, "ttl": self.ttl})
                    .scalars()
                    .first()
                    is not None
                )
        except Exception as exc:  # a database blip: keep what we had until it runs out
            log.warning("leader_lease_renew_failed", error=type(exc).__name__)
            won = self._leader
        else:
            if won:
                self._valid_until = started + self.ttl - self.renew_every
        self._set(won and time.monotonic() < self._valid_until)
        return self._leader

    def _set(self, leader: bool) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        log.info("leadership_acquired" if leader else "leadership_lost", holder=self.holder)
        if self._on_change is not None:
            self._on_change(leader)

    def start(self) -> None:
        """Try once now (so a lone replica leads from its first second), then keep renewing."""
        self.renew()
        if self._single:
            return
        self._thread = threading.Thread(target=self._loop, name="syncd-leadership", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.renew_every):
            self.renew()

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing and hand the lease over at once (a successor needn't wait out the TTL)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.renew_every + 5)
            self._thread = None
        if self._single or not release:
            return
        was_leader = self._leader
        self._set(False)
        try:
            with self.engine.begin() as conn:
                conn.execute(_RELEASE, {"name": LEADER_LEASE, "holder": self.holder})
        except Exception as exc:
            log.warning("leader_lease_release_failed", error=type(exc).__name__)
        else:
            if was_leader:
                log.info("leadership_released", holder=self.holder)


def lock_sqlite_database(url: str) -> int | None:
    """Hold an exclusive lock next to a SQLite database file for the life of this process.

    Returns the lock's file descriptor (close it to release), or None for other backends.
    Raises StartupError when another daemon holds it.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = str(parsed.database)
    path = Path(f"{database}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StartupError(
            f"another syncd daemon is already running on the SQLite database {database} "
            f"(lock file {path}); SQLite allows one daemon, use Postgres to run replicas"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextlib.contextmanager
def startup_lock(engine: Engine) -> Iterator[None]:
    """Serialise start-up work (migrations, catalog apply) across replicas on Postgres."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": STARTUP_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": STARTUP_LOCK})
            conn.commit()

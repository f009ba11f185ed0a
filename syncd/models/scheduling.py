"""Scheduler bookkeeping shared by every replica: one row per cluster-job tick, and the
boundary transitions already announced."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from .base import UTCDateTime, created_field, ts_field


class SchedulerRun(SQLModel, table=True):
    """One run of a cluster-wide job: the primary key makes a tick claimable only once.

    ``tick`` is the scheduled instant the run stands for; ``covers_from`` the first tick it
    covers (earlier than ``tick`` when missed ticks, e.g. during a failover, were coalesced
    into it). ``status``: running | done | failed.
    """

    __tablename__ = "scheduler_run"

    job_id: str = Field(primary_key=True, max_length=64)
    tick: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    covers_from: datetime = Field(sa_type=UTCDateTime)
    ticks: int = 1
    holder: str = Field(max_length=255)
    status: str = Field(default="running", max_length=16)
    started_at: datetime = created_field()
    finished_at: datetime | None = ts_field()


class BoundaryMark(SQLModel, table=True):
    """A time-boundary transition that leaves no other trace (an override expiring, a metric
    period rolling over) was announced: re-running the boundary job skips it."""

    __tablename__ = "boundary_mark"

    kind: str = Field(primary_key=True, max_length=32)
    subject: str = Field(primary_key=True, max_length=128)
    at: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    created_at: datetime = created_field()

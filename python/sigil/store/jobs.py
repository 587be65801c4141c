"""The scheduler's job table (``apscheduler_jobs``): its name, and its creation on a database that lacks it.

``sigil migrate`` creates the table (migration 0006). APScheduler's job store would also create it on
start, with a check-then-create that is not atomic: two daemons starting together on one database
would both try, and one would fail; :func:`create_job_table` serialises that.

Unlike the other stores this one is synchronous: APScheduler's SQLAlchemy job store runs its
statements on the caller's thread.
"""

from __future__ import annotations

from sqlalchemy import Engine, Table, text

#: APScheduler's table in the daemon's database.
JOB_TABLE = "apscheduler_jobs"
#: Advisory lock serialising the creation of the job table ("sigil-jobs" in ASCII, truncated).
JOBSTORE_DDL_LOCK_KEY = 0x5369_6769_6C4A_6F62


def create_job_table(engine: Engine, table: Table) -> None:
    """Creates ``table`` if it is missing, under a transaction-scoped advisory lock, so that daemons
    starting together on one database create it once and none of them fails."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": JOBSTORE_DDL_LOCK_KEY})
        table.create(conn, checkfirst=True)

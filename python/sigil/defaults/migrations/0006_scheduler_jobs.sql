-- The daemon's persistent schedule: APScheduler 3's SQLAlchemyJobStore table, in the shape that job
-- store defines, so that `sigil migrate` creates every table Sigil uses and a daemon needs no CREATE
-- privilege. IF NOT EXISTS: daemons before this migration created it themselves.
CREATE TABLE IF NOT EXISTS apscheduler_jobs (
    id            varchar(191) PRIMARY KEY,
    next_run_time double precision,
    job_state     bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_apscheduler_jobs_next_run_time ON apscheduler_jobs (next_run_time);

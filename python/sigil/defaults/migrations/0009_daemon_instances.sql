-- One row per daemon instance: the process that holds (or last held) its lease, the database session
-- whose session-level advisory lock IS the lease, and the share of the work the instance claims. The
-- row names the holder to a refused process; whether the instance is live is the lock's to say (held by
-- `backend_pid`, see pg_locks), never this row's: a holder killed with -9 leaves its row, not its lock.
CREATE TABLE daemon_instances (
    instance    text PRIMARY KEY,
    host        text NOT NULL,
    pid         integer NOT NULL,
    since       timestamptz NOT NULL,
    backend_pid integer NOT NULL,
    variants    text[] NOT NULL,
    shard_index integer NOT NULL CHECK (shard_index >= 0),
    shard_count integer NOT NULL CHECK (shard_count >= 1 AND shard_index < shard_count),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Heartbeats name the daemon instance that wrote them: several daemons may share one database, and a
-- dead one must not hide behind a live one's heartbeat. Rows written before this migration belong to
-- the default instance.
ALTER TABLE scanner_heartbeats ADD COLUMN instance text NOT NULL DEFAULT 'main';
CREATE INDEX scanner_heartbeats_instance ON scanner_heartbeats (instance, finished_at DESC);

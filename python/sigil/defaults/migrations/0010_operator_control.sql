-- The operator's controls, written by `sigil pause | resume | exit` and by the daemon's HTTP API, read by
-- every daemon at each pass: the database is the one path, so a command reaches a daemon on any host,
-- and a pause outlives a restart.

-- A pause stops new opens (exits go on) in its scope: one instance or every one ('*'), one variant or
-- every one ('*'). No row in a daemon's scope: it trades.
CREATE TABLE control_pauses (
    instance   text NOT NULL DEFAULT '*',
    variant_id text NOT NULL DEFAULT '*',
    since      timestamptz NOT NULL DEFAULT now(),
    by_whom    text NOT NULL,
    PRIMARY KEY (instance, variant_id)
);

-- A request to sell one position at the market (exit reason `manual`), carried out by the daemon whose
-- share holds the position at its next pass; done_at and outcome say when and how it ended.
CREATE TABLE control_exits (
    id           bigserial PRIMARY KEY,
    position_id  bigint NOT NULL REFERENCES micro_positions (id),
    requested_at timestamptz NOT NULL DEFAULT now(),
    by_whom      text NOT NULL,
    done_at      timestamptz,
    outcome      text CHECK (outcome IN ('closed', 'not_open'))
);
-- One pending request per position: asking twice does not sell twice.
CREATE UNIQUE INDEX control_exits_pending ON control_exits (position_id) WHERE done_at IS NULL;

-- The audit log learns the operator's actions ('control', reason pause/resume/exit) and the signals a
-- pause declined (skip reason 'paused').
ALTER TABLE events
    DROP CONSTRAINT events_kind_check,
    ADD CONSTRAINT events_kind_check
        CHECK (kind IN ('signal', 'skip', 'open', 'fill', 'close', 'error', 'control')),
    DROP CONSTRAINT events_check,
    ADD CONSTRAINT events_skip_reason_check
        CHECK (kind <> 'skip' OR reason IN ('open', 'cooldown', 'max_open', 'balance', 'paused'));

-- The state around positions: cooldowns, paper accounts, proof of progress, and the audit log.

-- One row per (variant, symbol): the pair may not open again before `protected_until`.
-- Written in the same transaction as the open (the cooldown starts at OPEN, not at close), and
-- only ever through SymbolProtectionStore.
CREATE TABLE symbol_protections (
    variant_id      text NOT NULL,
    symbol          text NOT NULL,
    protected_until timestamptz NOT NULL,
    reason          text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (variant_id, symbol)
);
CREATE INDEX symbol_protections_until ON symbol_protections (protected_until);

-- Orders changes of one (variant, symbol) in the guard mirrors: taken while the pair's advisory
-- lock is held, so its values follow commit order for that pair.
CREATE SEQUENCE guard_change_seq;

-- A paper account per variant. `balance` is debited by opens (stake + fee) and credited by closes
-- (proceeds); `equity` is marked to market by the daemon after each pass.
CREATE TABLE variant_accounts (
    variant_id       text PRIMARY KEY,
    starting_balance double precision NOT NULL CHECK (starting_balance >= 0),
    balance          double precision NOT NULL CHECK (balance >= 0),
    equity           double precision NOT NULL,
    equity_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per completed scanner pass (a heartbeat is proof of progress, not of a live process).
CREATE TABLE scanner_heartbeats (
    id              bigserial PRIMARY KEY,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    duration_s      double precision NOT NULL CHECK (duration_s >= 0),
    symbols_scanned integer NOT NULL CHECK (symbols_scanned >= 0),
    signals         integer NOT NULL DEFAULT 0 CHECK (signals >= 0),
    opens           integer NOT NULL DEFAULT 0 CHECK (opens >= 0),
    closes          integer NOT NULL DEFAULT 0 CHECK (closes >= 0),
    errors          integer NOT NULL DEFAULT 0 CHECK (errors >= 0),
    host            text NOT NULL,
    pid             integer NOT NULL
);
CREATE INDEX scanner_heartbeats_finished ON scanner_heartbeats (finished_at DESC);

-- The audit log: every signal, every skipped signal with its reason, every open, close and error.
CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL CHECK (kind IN ('signal', 'skip', 'open', 'close', 'error')),
    variant_id  text,
    symbol      text,
    reason      text,
    position_id bigint,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK (kind <> 'skip' OR reason IN ('open', 'cooldown', 'max_open', 'balance'))
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_kind_at ON events (kind, at);
CREATE INDEX events_position ON events (position_id) WHERE position_id IS NOT NULL;

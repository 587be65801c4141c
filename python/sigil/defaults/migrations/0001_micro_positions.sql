-- Positions as the schema first stored them: one table for every variant, told apart only by a free
-- `strategy` tag, and no unique index (so nothing stopped two open rows on one symbol).
-- 0003 adds `variant_id`, settles the duplicates and only then adds the unique index.
--
-- Prices, quantities and money are double precision on purpose: the engine and replay compute in
-- IEEE-754 doubles, and the database must store exactly the numbers they produced.

CREATE TABLE micro_positions (
    id            bigserial PRIMARY KEY,
    strategy      text,
    symbol        text NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    opened_at     timestamptz NOT NULL,
    entry_price   double precision NOT NULL,
    qty           double precision NOT NULL,
    stake         double precision NOT NULL,
    entry_fee     double precision NOT NULL DEFAULT 0,
    stop_pct      double precision NOT NULL,
    stop_price    double precision NOT NULL,
    atr_at_entry  double precision,
    trail_active  boolean NOT NULL DEFAULT false,
    trail_highest double precision,
    trail_stop    double precision,
    closed_at     timestamptz,
    exit_price    double precision,
    exit_reason   text,
    pnl           double precision,
    fees          double precision
);

CREATE INDEX micro_positions_symbol_status ON micro_positions (symbol, status);

-- Every position belongs to a variant, and a (variant, symbol) has at most one open position.
-- The order matters on a populated table: backfill the variant, settle the duplicate open rows,
-- and only then create the unique index (it would fail on the duplicates).

ALTER TABLE micro_positions ADD COLUMN variant_id text;

-- Rows written before variants existed carry the variant in `strategy` when they carry it at all.
UPDATE micro_positions SET variant_id = COALESCE(NULLIF(btrim(strategy), ''), 'legacy');

ALTER TABLE micro_positions ALTER COLUMN variant_id SET NOT NULL;

-- Keep the oldest open row of each (variant, symbol) (by opened_at, then id); close the others with
-- the reason `duplicate_open`, no exit price and no P&L (they were never real positions of their
-- own), and record each in the audit log.
WITH ranked AS (
    SELECT id,
           row_number() OVER (PARTITION BY variant_id, symbol ORDER BY opened_at, id) AS n
    FROM micro_positions
    WHERE status = 'open'
), settled AS (
    UPDATE micro_positions AS p
    SET status = 'closed', closed_at = now(), exit_reason = 'duplicate_open', fees = p.entry_fee
    FROM ranked AS r
    WHERE p.id = r.id AND r.n > 1
    RETURNING p.id, p.variant_id, p.symbol, p.opened_at
)
INSERT INTO events (at, kind, variant_id, symbol, reason, position_id, detail)
SELECT now(), 'close', variant_id, symbol, 'duplicate_open', id,
       jsonb_build_object(
           'note', 'closed by migration 0003: another position of this variant and symbol was open',
           'opened_at', opened_at)
FROM settled;

ALTER TABLE micro_positions DROP COLUMN strategy;

CREATE UNIQUE INDEX micro_positions_one_open ON micro_positions (variant_id, symbol) WHERE status = 'open';
CREATE INDEX micro_positions_variant_status ON micro_positions (variant_id, status);
DROP INDEX micro_positions_symbol_status;

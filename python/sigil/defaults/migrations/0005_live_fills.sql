-- Live trading. A live open reserves its position first (the advisory lock, the guard re-check and the
-- unique index decide, exactly as for a paper open), then sends the order, then records the exchange's
-- fill into the reserved row; an order that did not execute closes the reservation with no P&L.
--   fill: 'paper'    filled by the paper broker before the open (every row before this migration);
--         'reserved' the order was sent, its fill is not recorded yet (the row holds the estimate);
--         'exchange' the exchange's fill is recorded.
-- The order ids name the position's orders at the exchange.
ALTER TABLE micro_positions
    ADD COLUMN fill text NOT NULL DEFAULT 'paper' CHECK (fill IN ('paper', 'reserved', 'exchange')),
    ADD COLUMN entry_order_id text,
    ADD COLUMN exit_order_id text;

-- A recorded fill is an event of its own in the audit log.
ALTER TABLE events
    DROP CONSTRAINT events_kind_check,
    ADD CONSTRAINT events_kind_check CHECK (kind IN ('signal', 'skip', 'open', 'fill', 'close', 'error'));

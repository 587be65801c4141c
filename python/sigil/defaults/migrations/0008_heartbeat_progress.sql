-- Progress, not motion: a heartbeat says how many candles its pass decided, the close time of the
-- newest candle decided so far (market time) and the exchange's clock at the pass, so a probe can tell
-- a daemon that passes but falls behind (sigil probe --max-lag).
ALTER TABLE scanner_heartbeats
    ADD COLUMN candles_decided integer NOT NULL DEFAULT 0 CHECK (candles_decided >= 0),
    ADD COLUMN market_time timestamptz,
    ADD COLUMN exchange_time timestamptz;

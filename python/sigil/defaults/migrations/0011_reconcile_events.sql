-- A live daemon's books reconciled against the exchange account: the audit log learns kind
-- 'reconcile' (reason drift, agree, ack or unknown_order; detail names the instance and the assets).
ALTER TABLE events
    DROP CONSTRAINT events_kind_check,
    ADD CONSTRAINT events_kind_check
        CHECK (kind IN ('signal', 'skip', 'open', 'fill', 'close', 'error', 'control', 'reconcile'));

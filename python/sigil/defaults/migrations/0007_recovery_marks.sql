-- Recovery that equals replay. A completed pass marks every variant's account in one transaction:
-- equity_at (the resume point) and balance_mark, the balance at that point to the bit. A rebuild
-- starts the engine from these marks and re-applies, candle by candle, what the database already
-- holds from after them, with the numbers recorded here: a close's gross proceeds and its fee.
ALTER TABLE variant_accounts ADD COLUMN balance_mark double precision;

ALTER TABLE micro_positions
    ADD COLUMN exit_gross double precision,
    ADD COLUMN exit_fee double precision;

-- The operators' web console (read views; see cashback_store::console).
--
-- * Acquirer files by reception instant: the console lists every acquirer's files newest first
--   and counts them per day. One row per file, so this index costs nothing on the ingestion path.
-- * One snapshot per award period and UTC day of the live Super Cashback ranking, written by
--   `cashback serve` every few minutes (the last one of the day wins).
CREATE INDEX acquirer_file_by_received ON acquirer_file (received_at);

CREATE TABLE ranking_snapshot (
    award_period_id bigint NOT NULL,
    day             date NOT NULL,
    participants    bigint NOT NULL CHECK (participants >= 0),
    count_at_n      bigint NOT NULL CHECK (count_at_n >= 0),
    top_count       bigint NOT NULL CHECK (top_count >= 0),
    awarded         bigint NOT NULL CHECK (awarded >= 0),
    recorded_at     timestamptz NOT NULL,
    PRIMARY KEY (award_period_id, day)
);

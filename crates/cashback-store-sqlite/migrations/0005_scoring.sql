-- Cashback engine results (issue 4): one row per citizen and award period, rewritten whenever a
-- finished file brings rows of that citizen and period (the totals are re-evaluated from all of
-- the citizen's rows of the period). `seq` orders every write: the in-memory rankings follow
-- the rows with a `seq` above the last one they applied. `citizen_id` is the citizen's rowid
-- (assigned in enrollment order; this database is never VACUUMed, which could renumber it).
CREATE TABLE citizen_period (
    fiscal_code            TEXT NOT NULL,
    award_period_id        INTEGER NOT NULL,
    citizen_id             INTEGER NOT NULL,
    enabled                INTEGER NOT NULL,
    cashback_cents         INTEGER NOT NULL CHECK (cashback_cents >= 0),
    score_total_cents      INTEGER NOT NULL CHECK (score_total_cents >= 0),
    transactions           INTEGER NOT NULL CHECK (transactions >= 0),
    last_counted_at        INTEGER,
    id_trx_min_transaction TEXT,
    id_trx_pivot           TEXT,
    pivot_cashback_cents   INTEGER,
    seq                    INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    PRIMARY KEY (fiscal_code, award_period_id)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX citizen_period_by_seq ON citizen_period (seq);

-- Per-period engine options (anti-abuse; NULL = off) and the reversal retention.
ALTER TABLE award_period ADD COLUMN min_amount_cents INTEGER;
ALTER TABLE award_period ADD COLUMN max_payments_per_merchant_day INTEGER;
ALTER TABLE award_period ADD COLUMN reversal_retention_us INTEGER NOT NULL DEFAULT 2592000000000;

-- Credentials gain the 'operator' kind (operator API). SQLite cannot alter a CHECK: rebuild.
CREATE TABLE credential_new (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('issuer', 'acquirer', 'payment-manager', 'operator')),
    scope      TEXT NOT NULL,
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
INSERT INTO credential_new SELECT id, kind, scope, key_sha256, created_at, revoked_at FROM credential;
DROP TABLE credential;
ALTER TABLE credential_new RENAME TO credential;

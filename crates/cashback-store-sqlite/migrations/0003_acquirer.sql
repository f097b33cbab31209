-- Acquirer transaction files and the transactions they carry (issue 3).

CREATE TABLE acquirer_file (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    abi         TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    checksum    TEXT,
    status      TEXT NOT NULL CHECK (status IN ('PROCESSING', 'DONE', 'FAILED')),
    received_at INTEGER NOT NULL,
    finished_at INTEGER,
    last_line   INTEGER NOT NULL DEFAULT 0,
    accepted    INTEGER NOT NULL DEFAULT 0,
    ineligible  INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    error       TEXT
) STRICT;
CREATE INDEX acquirer_file_by_abi ON acquirer_file (abi, received_at);

-- Malformed lines of a file: line number, field, reason. Never the line's content.
CREATE TABLE file_rejection (
    file_id INTEGER NOT NULL REFERENCES acquirer_file (id),
    line    INTEGER NOT NULL,
    field   TEXT NOT NULL,
    reason  TEXT NOT NULL,
    PRIMARY KEY (file_id, line)
) STRICT, WITHOUT ROWID;

-- Every well-formed row, eligible (fiscal_code and award_period_id set) or not (ineligible set).
-- Appended in ingestion order (rowid); `dedup_key` (16 bytes of SHA-256 over id_trx_acquirer,
-- instant, sender code, acquirer id and operation type) makes a row count once.
CREATE TABLE acquirer_transaction (
    id              INTEGER PRIMARY KEY,
    dedup_key       BLOB NOT NULL CHECK (length(dedup_key) = 16),
    file_id         INTEGER NOT NULL,
    line            INTEGER NOT NULL,
    hpan            BLOB NOT NULL CHECK (length(hpan) = 32),
    fiscal_code     TEXT,
    award_period_id INTEGER,
    ineligible      TEXT,
    trx_at          INTEGER NOT NULL,
    trx_offset      INTEGER NOT NULL,
    reversal        INTEGER NOT NULL,
    amount_cents    INTEGER NOT NULL CHECK (amount_cents >= 0),
    circuit_type    INTEGER NOT NULL,
    sender_code     TEXT NOT NULL,
    acquirer_id     TEXT NOT NULL,
    merchant_id     TEXT NOT NULL,
    terminal_id     TEXT NOT NULL,
    id_trx_acquirer TEXT NOT NULL,
    id_trx_issuer   TEXT,
    correlation_id  TEXT,
    bin             TEXT NOT NULL,
    mcc             TEXT,
    pos_type        INTEGER,
    par             TEXT,
    CHECK ((ineligible IS NULL) = (fiscal_code IS NOT NULL AND award_period_id IS NOT NULL))
) STRICT;
CREATE UNIQUE INDEX acquirer_transaction_dedup ON acquirer_transaction (dedup_key);
CREATE INDEX acquirer_transaction_by_citizen ON acquirer_transaction (fiscal_code, award_period_id)
    WHERE ineligible IS NULL;
CREATE INDEX acquirer_transaction_by_hpan ON acquirer_transaction (hpan);

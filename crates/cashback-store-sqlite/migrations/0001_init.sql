-- Citizens. Times are Unix microseconds (UTC); money is integer euro-cents.
CREATE TABLE citizen (
    fiscal_code              TEXT PRIMARY KEY,
    enabled                  INTEGER NOT NULL,
    timestamp_tc             INTEGER NOT NULL,
    opt_in_status            TEXT NOT NULL DEFAULT 'NOREQ' CHECK (opt_in_status IN ('NOREQ', 'ACCEPTED', 'DENIED')),
    payoff_instr             TEXT,
    payoff_instr_type        TEXT,
    account_holder_cf        TEXT,
    account_holder_name      TEXT,
    account_holder_surname   TEXT,
    check_instr_status       TEXT,
    technical_account_holder TEXT,
    issuer_card_id           TEXT,
    cancellation             INTEGER,
    channel                  TEXT NOT NULL,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL
) STRICT;

-- Payment instruments, by hashed PAN. No clear PAN is ever stored.
CREATE TABLE payment_instrument (
    hpan              TEXT PRIMARY KEY,
    fiscal_code       TEXT NOT NULL,
    channel           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE')),
    activation_date   INTEGER NOT NULL,
    deactivation_date INTEGER,
    updated_at        INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX payment_instrument_by_owner ON payment_instrument (fiscal_code, status);

-- Every activation window [activated_at, deactivated_at) with its owner and channel, clustered
-- by hpan (one b-tree, so an enrollment touches as few pages as possible). `seq` orders windows
-- opened in the same microsecond. At most one open window per hpan is guaranteed by the single
-- writer applying the domain's decision functions (and checked by the contract suite).
CREATE TABLE payment_instrument_history (
    hpan           TEXT NOT NULL,
    activated_at   INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    fiscal_code    TEXT NOT NULL,
    channel        TEXT NOT NULL,
    deactivated_at INTEGER,
    PRIMARY KEY (hpan, activated_at, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE award_period (
    award_period_id            INTEGER PRIMARY KEY,
    start_date                 TEXT NOT NULL,
    end_date                   TEXT NOT NULL,
    grace_period_days          INTEGER NOT NULL,
    min_transaction_number     INTEGER NOT NULL,
    max_amount_cents           INTEGER NOT NULL,
    min_position               INTEGER NOT NULL,
    max_transaction_cashback_cents INTEGER NOT NULL,
    max_period_cashback_cents  INTEGER NOT NULL,
    cashback_percentage        INTEGER NOT NULL,
    max_transaction_evaluated_cents INTEGER NOT NULL
) STRICT;

-- Client credentials; only the SHA-256 of each API key is kept.
CREATE TABLE credential (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('issuer', 'acquirer', 'payment-manager')),
    scope      TEXT NOT NULL,
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

-- PostgreSQL twin of the SQLite schema: same tables and columns, native types.
-- Times are timestamptz (microsecond precision, UTC); money is bigint euro-cents.

CREATE TABLE citizen (
    fiscal_code              text PRIMARY KEY CHECK (length(fiscal_code) = 16),
    enabled                  boolean NOT NULL,
    timestamp_tc             timestamptz NOT NULL,
    opt_in_status            text NOT NULL DEFAULT 'NOREQ' CHECK (opt_in_status IN ('NOREQ', 'ACCEPTED', 'DENIED')),
    payoff_instr             text,
    payoff_instr_type        text,
    account_holder_cf        text,
    account_holder_name      text,
    account_holder_surname   text,
    check_instr_status       text,
    technical_account_holder text,
    issuer_card_id           text,
    cancellation             timestamptz,
    channel                  text NOT NULL CHECK (length(channel) BETWEEN 1 AND 20),
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL
);

-- Payment instruments, by hashed PAN. No clear PAN is ever stored.
CREATE TABLE payment_instrument (
    hpan              text PRIMARY KEY,
    fiscal_code       text NOT NULL,
    channel           text NOT NULL CHECK (length(channel) BETWEEN 1 AND 20),
    status            text NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE')),
    activation_date   timestamptz NOT NULL,
    deactivation_date timestamptz,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX payment_instrument_by_owner ON payment_instrument (fiscal_code, status);

-- Every activation window [activated_at, deactivated_at) with its owner and channel.
CREATE TABLE payment_instrument_history (
    id             bigserial PRIMARY KEY,
    hpan           text NOT NULL,
    fiscal_code    text NOT NULL,
    channel        text NOT NULL CHECK (length(channel) BETWEEN 1 AND 20),
    activated_at   timestamptz NOT NULL,
    deactivated_at timestamptz
);
CREATE INDEX payment_instrument_history_by_hpan ON payment_instrument_history (hpan, activated_at);
-- At most one open activation window per instrument.
CREATE UNIQUE INDEX payment_instrument_history_one_open ON payment_instrument_history (hpan) WHERE deactivated_at IS NULL;

-- Day counts, numbers and percentages are u32 in the domain: bigint holds them all.
CREATE TABLE award_period (
    award_period_id                 bigint PRIMARY KEY,
    start_date                      date NOT NULL,
    end_date                        date NOT NULL,
    grace_period_days               bigint NOT NULL CHECK (grace_period_days >= 0),
    min_transaction_number          bigint NOT NULL CHECK (min_transaction_number >= 0),
    max_amount_cents                bigint NOT NULL,
    min_position                    bigint NOT NULL CHECK (min_position >= 0),
    max_transaction_cashback_cents  bigint NOT NULL,
    max_period_cashback_cents       bigint NOT NULL,
    cashback_percentage             bigint NOT NULL CHECK (cashback_percentage >= 0),
    max_transaction_evaluated_cents bigint NOT NULL
);

-- Client credentials; only the SHA-256 of each API key is kept.
CREATE TABLE credential (
    id         text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('issuer', 'acquirer', 'payment-manager')),
    scope      text NOT NULL,
    key_sha256 text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);

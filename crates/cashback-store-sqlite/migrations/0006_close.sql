-- Period close (issue 7). Value checks are written as OR chains, not IN lists: SQLite builds an
-- ephemeral index for every evaluation of an IN list of more than two values, on every insert.
-- Awards, payout files, inbound files, complaints, notification outbox,
-- scheduler job claims. See cashback_store::close for the life of an award.
CREATE TABLE award (
    award_id                 INTEGER PRIMARY KEY,
    award_period_id          INTEGER NOT NULL,
    fiscal_code              TEXT NOT NULL,
    kind                     TEXT NOT NULL CHECK ((kind = 'AWARD' OR kind = 'REISSUE' OR kind = 'CORRECTION' OR kind = 'INTEGRATION')),
    related_id               INTEGER,
    complaint_id             INTEGER,
    agent_id                 INTEGER,
    amount_cents             INTEGER NOT NULL CHECK (amount_cents >= 0),
    cashback_cents           INTEGER NOT NULL CHECK (cashback_cents >= 0),
    jackpot_cents            INTEGER NOT NULL CHECK (jackpot_cents >= 0),
    typology                 TEXT NOT NULL,
    transactions             INTEGER NOT NULL,
    rank                     INTEGER,
    score_total_cents        INTEGER NOT NULL,
    period_cap_applied       INTEGER NOT NULL,
    status                   TEXT NOT NULL CHECK ((status = 'NEW' OR status = 'NOTHING_DUE' OR status = 'SENT' OR status = 'EXECUTED' OR status = 'FAILED' OR status = 'INTEGRATION')),
    payoff_instr             TEXT,
    payoff_instr_type        TEXT,
    account_holder_cf        TEXT,
    account_holder_name      TEXT,
    account_holder_surname   TEXT,
    check_instr_status       TEXT,
    technical_account_holder TEXT,
    issuer_card_id           TEXT,
    payout_file_id           INTEGER,
    outcome_result           TEXT,
    outcome_executed         INTEGER,
    outcome_reason           TEXT,
    outcome_cro              TEXT,
    outcome_execution_date   TEXT,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL
) STRICT;
-- Once-only rules (partial unique indexes: no NULL-in-unique-index trap, §8.8).
CREATE UNIQUE INDEX award_once ON award (award_period_id, fiscal_code) WHERE kind = 'AWARD';
CREATE UNIQUE INDEX award_reissue_once ON award (related_id) WHERE kind = 'REISSUE';
CREATE UNIQUE INDEX award_correction_once ON award (complaint_id) WHERE kind = 'CORRECTION';
CREATE UNIQUE INDEX award_integration_once ON award (agent_id) WHERE kind = 'INTEGRATION';
CREATE INDEX award_by_citizen ON award (fiscal_code);
CREATE INDEX award_by_status ON award (status) WHERE (status = 'NEW' OR status = 'FAILED');
CREATE INDEX award_by_file ON award (payout_file_id) WHERE payout_file_id IS NOT NULL;

CREATE TABLE award_close (
    award_period_id INTEGER PRIMARY KEY,
    citizens        INTEGER NOT NULL,
    awards          INTEGER NOT NULL,
    not_eligible    INTEGER NOT NULL,
    winners         INTEGER NOT NULL,
    cashback_cents  INTEGER NOT NULL,
    jackpot_cents   INTEGER NOT NULL,
    amount_cents    INTEGER NOT NULL,
    without_iban    INTEGER NOT NULL,
    closed_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE payout_file (
    payout_file_id INTEGER PRIMARY KEY,
    run_id         INTEGER NOT NULL,
    name           TEXT NOT NULL UNIQUE,
    chunk          INTEGER NOT NULL,
    total_chunks   INTEGER NOT NULL,
    rows           INTEGER NOT NULL,
    amount_cents   INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    sha256         TEXT
) STRICT;

CREATE TABLE inbound_file (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    applied     INTEGER NOT NULL,
    unchanged   INTEGER NOT NULL,
    rejected    INTEGER NOT NULL,
    received_at INTEGER NOT NULL
) STRICT;

CREATE TABLE complaint (
    complaint_id        INTEGER PRIMARY KEY,
    fiscal_code         TEXT NOT NULL,
    award_period_id     INTEGER NOT NULL,
    kind                TEXT NOT NULL CHECK ((kind = 'MISSING_TRANSACTION' OR kind = 'WRONG_AMOUNT' OR kind = 'PAYMENT_NOT_RECEIVED')),
    description         TEXT NOT NULL,
    status              TEXT NOT NULL CHECK ((status = 'OPEN' OR status = 'ACCEPTED' OR status = 'REJECTED')),
    correction_cents    INTEGER CHECK (correction_cents > 0),
    correction_award_id INTEGER,
    operator_note       TEXT,
    created_at          INTEGER NOT NULL,
    decided_at          INTEGER
) STRICT;
CREATE UNIQUE INDEX complaint_open_once ON complaint (fiscal_code, award_period_id, kind) WHERE status = 'OPEN';
CREATE INDEX complaint_by_citizen ON complaint (fiscal_code);
CREATE INDEX complaint_by_status ON complaint (status, complaint_id);

-- Transactional outbox of citizen notifications.
CREATE TABLE notification (
    notification_id INTEGER PRIMARY KEY,
    dedup_key       TEXT NOT NULL UNIQUE,
    fiscal_code     TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK ((status = 'PENDING' OR status = 'SENT' OR status = 'FAILED')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    message_id      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX notification_due ON notification (next_attempt_at) WHERE status = 'PENDING';

-- Scheduler: one row per job key; whoever inserts (or takes over a stale claim) runs it.
CREATE TABLE job_run (
    job         TEXT PRIMARY KEY,
    claimed_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT
) STRICT;

-- Audit trail (issue 9): every state change with who, when and what, written in the same
-- transaction as the change. Append-only: the triggers refuse updates and deletes.
CREATE TABLE audit_event (
    id      INTEGER PRIMARY KEY,  -- rowid: increasing in commit order (one writer, no deletes)
    at      INTEGER NOT NULL,     -- unix microseconds, the change's `now`
    actor   TEXT NOT NULL,        -- citizen:<cf>, issuer:<credential>, operator:<credential>, cli:<user>, system
    action  TEXT NOT NULL,        -- cashback_store::audit::AuditAction::as_str
    subject TEXT NOT NULL,        -- fiscal code, hpan (hex), period:<id>, credential:<id>, …
    detail  TEXT NOT NULL         -- JSON object
) STRICT;

CREATE INDEX audit_event_by_subject ON audit_event (subject, id);

CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
BEGIN
    SELECT RAISE(ABORT, 'audit_event is append-only');
END;

CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
BEGIN
    SELECT RAISE(ABORT, 'audit_event is append-only');
END;

-- Erasure after the retention period (issue 9) deletes a citizen's closed activation windows.
CREATE INDEX instrument_window_by_owner ON instrument_window (fiscal_code);

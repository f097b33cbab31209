-- Audit trail (issue 9): every state change with who, when and what, written in the same
-- transaction as the change. Append-only: the trigger refuses UPDATE, DELETE and TRUNCATE.
CREATE TABLE audit_event (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL,
    subject text NOT NULL,
    detail  jsonb NOT NULL
);

CREATE INDEX audit_event_by_subject ON audit_event (subject, id);

CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only';
END
$$;

CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();

-- Erasure after the retention period (issue 9) deletes a citizen's closed activation windows.
CREATE INDEX payment_instrument_history_by_owner ON payment_instrument_history (fiscal_code);

-- Acquirer transactions: lookup structures written once per file, in key order (ingest
-- throughput, issue 3).
--
-- The three indexes of 0003 took a random key per row (dedup key, hpan, fiscal code). Once they
-- outgrow a chunk, every row dirties a page of each of them and every chunk's commit writes those
-- pages to the WAL again: ~3 KiB of WAL per row, 20+ times the row. Now:
--
-- * `acquirer_transaction` is appended to (rowid order = ingestion order), with one index on
--   `file_id`, which also only grows at its end.
-- * The keys of a file's rows join `acquirer_transaction_key`, and its rows join the per-card and
--   per-citizen tables, when the file is finished: one INSERT … SELECT … ORDER BY per table and
--   transaction, then a last transaction marks the file DONE; each b-tree page is written about
--   once per file. (A crash in between redoes the steps: they insert-or-ignore.)
-- * While a file is PROCESSING, the writer keeps its keys in memory (rebuilt from this table on
--   restart) and checks each new row against them and against `acquirer_transaction_key`, so
--   duplicates are still counted exactly, chunk by chunk.
-- * A file's rows show up in the per-citizen and per-card views when the file is DONE.

DROP INDEX acquirer_transaction_dedup;
DROP INDEX acquirer_transaction_by_citizen;
DROP INDEX acquirer_transaction_by_hpan;
CREATE INDEX acquirer_transaction_by_file ON acquirer_transaction (file_id);

-- Dedup keys of the rows of finished files (and of any file refused before this migration).
CREATE TABLE acquirer_transaction_key (
    dedup_key BLOB PRIMARY KEY CHECK (length(dedup_key) = 16)
) STRICT, WITHOUT ROWID;

-- Every row of a finished file, by card (support: "why didn't my payment count?").
CREATE TABLE acquirer_transaction_hpan (
    hpan BLOB NOT NULL CHECK (length(hpan) = 32),
    id   INTEGER NOT NULL,
    PRIMARY KEY (hpan, id)
) STRICT, WITHOUT ROWID;

-- Eligible rows of a finished file, by citizen and award period (scoring).
CREATE TABLE acquirer_transaction_citizen (
    fiscal_code     TEXT NOT NULL,
    award_period_id INTEGER NOT NULL,
    id              INTEGER NOT NULL,
    PRIMARY KEY (fiscal_code, award_period_id, id)
) STRICT, WITHOUT ROWID;

INSERT INTO acquirer_transaction_key (dedup_key)
    SELECT t.dedup_key FROM acquirer_transaction t JOIN acquirer_file f ON f.id = t.file_id
    WHERE f.status <> 'PROCESSING' ORDER BY t.dedup_key;
INSERT INTO acquirer_transaction_hpan (hpan, id)
    SELECT t.hpan, t.id FROM acquirer_transaction t JOIN acquirer_file f ON f.id = t.file_id
    WHERE f.status <> 'PROCESSING' ORDER BY t.hpan, t.id;
INSERT INTO acquirer_transaction_citizen (fiscal_code, award_period_id, id)
    SELECT t.fiscal_code, t.award_period_id, t.id FROM acquirer_transaction t JOIN acquirer_file f ON f.id = t.file_id
    WHERE f.status <> 'PROCESSING' AND t.ineligible IS NULL ORDER BY 1, 2, 3;

-- Several `cashback serve` nodes on one database (issue 6): a file being ingested is claimed by
-- one node for a lease. The claim is taken when the file begins, renewed by every chunk (under
-- the file's row lock) and checked by every chunk and by the finish, so a node that lost its
-- claim stores nothing more. A node that dies stops renewing: once `lease_until` passes (the
-- database's clock, the one clock every node shares), the next upload of the same name on any
-- node takes the file over and resumes it after its last committed line. NULL: no claim (files
-- received before this migration, finished files).
ALTER TABLE acquirer_file ADD COLUMN claimed_by text;
ALTER TABLE acquirer_file ADD COLUMN lease_until timestamptz;

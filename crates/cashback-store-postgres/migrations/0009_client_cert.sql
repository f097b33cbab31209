-- Mutual TLS (issue 9): the client certificate bound to a credential, as the SHA-256 of its
-- DER encoding (lower-case hex). A credential with one is accepted only on a TLS connection
-- that presented that certificate.
ALTER TABLE credential ADD COLUMN client_cert_sha256 text
    CHECK (client_cert_sha256 IS NULL OR length(client_cert_sha256) = 64);

-- Classifier rule versions (who, when, what changed, how it scored) and their activations;
-- admin API tokens (stored hashed).

CREATE TABLE rule_versions (
    id         BIGSERIAL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    created_by TEXT    NOT NULL,
    sha        TEXT    NOT NULL,
    source     TEXT    NOT NULL,            -- the rules file as submitted
    note       TEXT,
    diff       TEXT,                        -- unified diff against the version active at creation
    macro_f1   DOUBLE PRECISION                         -- on the labeled set when it was accepted
);

-- The active version is the one of the latest activation.
CREATE TABLE rule_activations (
    id         BIGSERIAL PRIMARY KEY,
    version_id BIGINT NOT NULL REFERENCES rule_versions (id),
    at         BIGINT NOT NULL,
    by_whom    TEXT    NOT NULL
);

CREATE TABLE api_tokens (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,            -- agent | marketing | ops | admin
    token_hash TEXT    NOT NULL UNIQUE,     -- sha256 hex of the token
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

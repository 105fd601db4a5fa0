-- Agents' corrections of a case's category: labeled rows for the classifier (the text is the
-- case's first message), with who, why and when.
CREATE TABLE corrections (
    id            BIGSERIAL PRIMARY KEY,
    case_id       BIGINT NOT NULL REFERENCES cases (id),
    from_category TEXT NOT NULL,
    to_category   TEXT NOT NULL,
    text          TEXT NOT NULL,
    by_name       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    at            BIGINT NOT NULL
);
CREATE INDEX corrections_at ON corrections (at);

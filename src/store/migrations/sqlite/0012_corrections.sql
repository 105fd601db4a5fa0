-- Agents' corrections of a case's category: labeled rows for the classifier (the text is the
-- case's first message), with who, why and when.
CREATE TABLE corrections (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id       INTEGER NOT NULL REFERENCES cases (id),
    from_category TEXT NOT NULL,
    to_category   TEXT NOT NULL,
    text          TEXT NOT NULL,
    by_name       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    at            INTEGER NOT NULL
);
CREATE INDEX corrections_at ON corrections (at);

-- Surveys waiting for a customer's answer (set when a return-visit survey is sent) and the
-- answers received. A reply counts as an answer only while a survey waits for that customer.
CREATE TABLE survey_waits (
    channel    TEXT    NOT NULL,
    address    TEXT    NOT NULL,
    survey     TEXT    NOT NULL,
    case_id    BIGINT,
    sent_at    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (channel, address)
);

CREATE TABLE survey_answers (
    id         BIGSERIAL PRIMARY KEY,
    survey     TEXT    NOT NULL,
    channel    TEXT    NOT NULL,
    address    TEXT    NOT NULL,
    case_id    BIGINT,
    answer     TEXT    NOT NULL,
    message_id BIGINT NOT NULL,
    at         BIGINT NOT NULL
);

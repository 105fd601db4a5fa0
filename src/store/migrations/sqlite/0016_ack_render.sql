-- An acknowledgement is rendered when it is sent, not inside the intake transaction (on
-- SQLite that transaction runs on the one writer thread, which does nothing but SQL). The
-- intake stores what the rendering needs (template, language, values; JSON); the send that
-- renders it writes the text, subject, HTML part, encoding and parts and clears this column.
ALTER TABLE messages ADD COLUMN render TEXT;

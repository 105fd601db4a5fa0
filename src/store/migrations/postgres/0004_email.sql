-- Email: the HTML part and threading headers of outbound mail; an index for the per-sender
-- acknowledgement cap.
ALTER TABLE messages ADD COLUMN body_html TEXT;
ALTER TABLE messages ADD COLUMN headers TEXT;   -- JSON: {"in_reply_to": "...", "references": ["..."]}
CREATE INDEX messages_out_to ON messages (to_addr, created_at) WHERE direction = 'out';

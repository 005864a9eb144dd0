-- The token a WebSocket ticket was minted with: a socket opened by the ticket stays
-- authorized only while that token is live (revoked or expired → the socket closes).
ALTER TABLE ws_tickets ADD COLUMN token_id TEXT;

-- Tickets counted from a Kafka topic (several instances): the log position (topic:partition:offset)
-- whose message counted the ticket. An instance that replays the log after taking a partition over
-- counts the ticket again at that position (its restored state predates it), never at another.
ALTER TABLE tickets ADD COLUMN fed_by TEXT;

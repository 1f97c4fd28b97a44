-- 12345 hotline tickets: one row per ticket number; updates (status, result) change the row.
CREATE TABLE tickets (
    number TEXT PRIMARY KEY,
    channel TEXT,
    category TEXT,
    concern TEXT NOT NULL,
    received_at BIGINT,
    credit_code TEXT,
    enterprise TEXT,
    industry TEXT,
    department TEXT,
    address TEXT,
    content TEXT,
    status TEXT,
    result TEXT,
    -- the site it was matched to, and how: credit_code, site, keyword, manual; NULL: unmatched
    site TEXT,
    matched_by TEXT,
    -- JSON list of what is wrong with it (kept and flagged, never dropped)
    problems TEXT NOT NULL,
    -- whether it has been counted by the rules (once, when it first has a site)
    fed BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updates BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tickets_site ON tickets (site, received_at);
CREATE INDEX tickets_unmatched ON tickets (site) WHERE site IS NULL;

-- yujing store (PostgreSQL), version 1: the tables of the SQLite store (integers are 64-bit):
-- warnings with their timeline, the transitions that made them, and the delivery outbox. Times
-- are milliseconds since the Unix epoch (UTC).

CREATE TABLE warnings (
    id           TEXT PRIMARY KEY,
    rule         TEXT NOT NULL,
    site         TEXT NOT NULL,
    site_kind    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    level        TEXT NOT NULL,
    level_rank   BIGINT NOT NULL,
    -- open | acknowledged | handled | closed | cleared
    status       TEXT NOT NULL,
    -- 1 while the rule's condition holds
    active       BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    title        TEXT NOT NULL,
    message      TEXT NOT NULL,
    -- the warning document of the latest transition (JSON)
    doc          TEXT NOT NULL,
    raised_at    BIGINT NOT NULL,
    -- event time the episode began (with rule and subject it makes the id)
    episode_start BIGINT NOT NULL,
    stored_at    BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    ack_due      BIGINT,
    handle_due   BIGINT,
    ack_within   BIGINT,
    acked_at     BIGINT,
    handled_at   BIGINT,
    closed_at    BIGINT,
    cleared_at   BIGINT,
    -- 0 on time; 1 reminded; 2 copied to the supervising unit
    overdue_step BIGINT NOT NULL DEFAULT 0,
    -- 1 once the supervising unit was told that handling is overdue
    handle_overdue BIGINT NOT NULL DEFAULT 0,
    supervisor   TEXT
);
CREATE INDEX warnings_status ON warnings (status, level_rank);
CREATE INDEX warnings_stored ON warnings (stored_at);

CREATE TABLE warning_departments (
    warning_id TEXT NOT NULL REFERENCES warnings (id),
    department TEXT NOT NULL,
    PRIMARY KEY (warning_id, department)
);
CREATE INDEX warning_departments_dept ON warning_departments (department);

CREATE TABLE transitions (
    warning_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    level      TEXT NOT NULL,
    at         BIGINT NOT NULL,
    stored_at  BIGINT NOT NULL,
    doc        TEXT NOT NULL,
    PRIMARY KEY (warning_id, seq)
);

CREATE TABLE timeline (
    id         BIGSERIAL PRIMARY KEY,
    warning_id TEXT NOT NULL,
    at         BIGINT NOT NULL,
    -- raised | escalated | de-escalated | cleared | reopened | delivered | delivery_failed |
    -- delivery_dead | acknowledged | feedback | closed | reminder | supervisor_notified
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX timeline_warning ON timeline (warning_id, id);

CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    -- warning id, transition seq, purpose, department, channel: one delivery per endpoint
    key          TEXT NOT NULL UNIQUE,
    warning_id   TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    -- transition | reminder | supervisor
    purpose      TEXT NOT NULL,
    department   TEXT NOT NULL,
    channel      TEXT NOT NULL,
    doc          TEXT NOT NULL,
    -- pending | delivered | dead
    state        TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,
    -- a worker is delivering it until then (a crash leaves it to expire; a restart clears it)
    leased_until BIGINT,
    created_at   BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error   TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_at);

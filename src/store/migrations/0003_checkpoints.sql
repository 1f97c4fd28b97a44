-- Engine checkpoints (several instances in one Kafka consumer group): per partition of the
-- readings topic, the window and alert state of the sites that partition carries, taken at an
-- offset. An instance that takes the partition over restores the state and reads on from there.
CREATE TABLE checkpoints (
    -- the Kafka consumer group, topic and partition
    grp         TEXT NOT NULL,
    topic       TEXT NOT NULL,
    part        BIGINT NOT NULL,
    -- the next offset to read: everything before it is in `state`
    next_offset BIGINT NOT NULL,
    -- fingerprint of the rules and sites the state was taken under (state taken under other
    -- rules is not restored)
    config      TEXT NOT NULL,
    -- the partition's own watermark when it was taken (NULL: idle, or nothing read yet); the
    -- other instances' watermarks wait for it, so that whoever takes the partition over is not
    -- ahead of it
    watermark   BIGINT,
    -- the state, encoded (postcard)
    state       BYTEA NOT NULL,
    instance    TEXT NOT NULL,
    saved_at    BIGINT NOT NULL,
    -- the ownership epoch of the instance that took it (see partition_epochs)
    epoch       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (grp, topic, part)
);

-- Fencing: every time an instance is given a partition it takes the next epoch; a checkpoint of an
-- older epoch (an instance cut off from the group that has not noticed yet) never replaces one of
-- a newer epoch.
CREATE TABLE partition_epochs (
    grp   TEXT NOT NULL,
    topic TEXT NOT NULL,
    part  BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    PRIMARY KEY (grp, topic, part)
);

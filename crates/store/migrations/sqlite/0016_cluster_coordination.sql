-- What replicas of Warden coordinate through the database (docs/production.md, "Replicas").

-- Which replica runs each background job (purges, retention, audit checkpoints, rollouts): the
-- holder of the job's lease, until the lease expires unrenewed.
CREATE TABLE job_leases (
    job        TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The gateway's throttle counters when replicas share them (`gateway.throttle_store =
-- "database"`): per limit and caller, GCRA's theoretical arrival time in microseconds since the
-- Unix epoch. A key whose time has passed is back at full allowance, and is purged.
CREATE TABLE throttle_counters (
    throttle_key TEXT   NOT NULL PRIMARY KEY,
    tat_micros   BIGINT NOT NULL
);

-- Which replica runs each background job (purges, retention, audit checkpoints, rollouts): the
-- holder of the job's lease, until the lease expires unrenewed (docs/production.md).
CREATE TABLE job_leases (
    job        TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);

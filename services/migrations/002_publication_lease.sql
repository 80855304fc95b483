-- R3: the worker publishing a finished job's outcome (video.processed event or dead-letter
-- copy) holds a lease on it, so a redelivery of the same message waits instead of
-- publishing the outcome a second time. Cleared when the outcome is recorded as published.
ALTER TABLE jobs
    ADD COLUMN publish_token uuid,
    ADD COLUMN publish_lease_expires_at timestamptz,
    ADD CONSTRAINT jobs_publish_lease_complete
        CHECK ((publish_token IS NULL) = (publish_lease_expires_at IS NULL)),
    ADD CONSTRAINT jobs_publish_lease_only_while_unpublished
        CHECK (publish_token IS NULL OR (finished_at IS NOT NULL AND notified_at IS NULL));

-- Ended jobs whose outcome has not left the database: what the worker's outcome sweep reads.
CREATE INDEX jobs_unpublished_idx ON jobs (finished_at)
    WHERE notified_at IS NULL AND finished_at IS NOT NULL;

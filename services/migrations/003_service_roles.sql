-- Least-privilege login roles for the services (D5, D6, G5): the API Lambda and the
-- workers log in with an RDS IAM auth token as these roles instead of the master user,
-- which only the migration function uses. Names are in services/common/roles.py.

-- Roles belong to the cluster, not the database: create them only if a previous run (or
-- another database of the cluster) has not. No password: they log in with IAM tokens.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'media_api') THEN
        CREATE ROLE media_api LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'media_worker') THEN
        CREATE ROLE media_worker LOGIN;
    END IF;
    -- rds_iam exists only on RDS/Aurora; membership makes the server accept IAM auth
    -- tokens (and only them) for these roles.
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
        GRANT rds_iam TO media_api, media_worker;
    END IF;
    -- CONNECT explicitly, so revoking it from PUBLIC (a common hardening) keeps them working.
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO media_api, media_worker',
                   current_database());
END
$$;

-- PostgreSQL before 15 lets every role create objects in the public schema; no service
-- may change the schema (a no-op on 15 and later, where that is already the default).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO media_api, media_worker;

-- Both: the start-up check that every migration they ship has been applied.
GRANT SELECT ON schema_migrations TO media_api, media_worker;

-- API (services/api, services/common/videos.py):
-- SELECT: GET /videos/{id}, GET /videos, and reading back the created row.
GRANT SELECT ON videos, jobs TO media_api;
-- INSERT: POST /videos writes the video and its job; only the columns it supplies, so the
-- status and media facts always start from their defaults.
GRANT INSERT (id, title, creator, source_uri) ON videos TO media_api;
GRANT INSERT (id, video_id) ON jobs TO media_api;
-- UPDATE: when the job.requested event cannot be put on the stream, the API marks the job
-- and the video FAILED; only the columns that statement sets.
GRANT UPDATE (state, last_error, finished_at, notified_at, updated_at) ON jobs TO media_api;
GRANT UPDATE (status, updated_at) ON videos TO media_api;

-- Worker (services/worker/jobs.py):
-- SELECT: the job's state and leases, the video returned after each transition.
GRANT SELECT ON videos, jobs TO media_worker;
-- UPDATE: the job state machine (claim, release, complete, fail, publication lease,
-- notified) and the video's status and media facts; never ids, titles, creators, sources
-- or creation times. The worker inserts and deletes no rows.
GRANT UPDATE (state, attempts, last_error, lease_token, lease_expires_at, notified_at,
              publish_token, publish_lease_expires_at, started_at, finished_at, updated_at)
    ON jobs TO media_worker;
GRANT UPDATE (status, duration_s, size_bytes, container, video_codec, audio_codec, width,
              height, bitrate, updated_at)
    ON videos TO media_worker;

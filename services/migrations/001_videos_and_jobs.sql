-- R1 / D8: video metadata and processing jobs.
CREATE TABLE videos (
    id           uuid PRIMARY KEY,
    title        text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    creator      text NOT NULL CHECK (char_length(creator) BETWEEN 1 AND 100),
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    status       text NOT NULL DEFAULT 'QUEUED'
                 CHECK (status IN ('QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED')),
    duration_s   double precision CHECK (duration_s >= 0),
    size_bytes   bigint CHECK (size_bytes >= 0),
    container    text,
    video_codec  text,
    audio_codec  text,
    width        integer CHECK (width > 0),
    height       integer CHECK (height > 0),
    bitrate      bigint CHECK (bitrate >= 0),
    source_uri   text NOT NULL CHECK (char_length(source_uri) BETWEEN 1 AND 1024),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Keyset pagination: newest first, by status or over all videos.
CREATE INDEX videos_status_uploaded_at_idx ON videos (status, uploaded_at DESC, id DESC);
CREATE INDEX videos_uploaded_at_idx ON videos (uploaded_at DESC, id DESC);

CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    video_id          uuid NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    state             text NOT NULL DEFAULT 'QUEUED'
                      CHECK (state IN ('QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error        text,
    -- The worker holding the job: a token per claim and when the claim lapses, so a job
    -- whose worker died can be claimed again once its lease (the SQS visibility) expires.
    lease_token       uuid,
    lease_expires_at  timestamptz,
    -- When the outcome left the database (video.processed event, or dead-letter copy).
    notified_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((state IN ('COMPLETED', 'FAILED')) = (finished_at IS NOT NULL)),
    CHECK ((state = 'PROCESSING') = (lease_token IS NOT NULL))
);

CREATE INDEX jobs_video_id_idx ON jobs (video_id);
CREATE INDEX jobs_state_idx ON jobs (state) WHERE state IN ('QUEUED', 'PROCESSING');

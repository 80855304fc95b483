-- M1-M6: uploads into S3, transcoding progress, published renditions.
--
-- A video now starts UPLOADING (its multipart upload open), becomes UPLOADED when the API
-- completes the upload and requests processing (the job row is written then), and ends
-- COMPLETED with a published version, FAILED, or ABORTED (the upload was abandoned).
-- QUEUED stays valid for rows written by the first release (registered EFS files).
ALTER TABLE videos DROP CONSTRAINT videos_status_check;
ALTER TABLE videos
    ADD CONSTRAINT videos_status_check CHECK (status IN
        ('UPLOADING', 'UPLOADED', 'QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'ABORTED')),
    ALTER COLUMN status SET DEFAULT 'UPLOADING',
    -- What the creator declared and the open multipart upload (NULL once completed or
    -- aborted). The upload id is never returned to clients.
    ADD COLUMN content_type text CHECK (char_length(content_type) BETWEEN 3 AND 128),
    ADD COLUMN upload_size_bytes bigint CHECK (upload_size_bytes > 0),
    ADD COLUMN upload_part_size bigint CHECK (upload_part_size > 0),
    ADD COLUMN upload_id text CHECK (char_length(upload_id) BETWEEN 1 AND 1024),
    -- Transcoding progress of the running job, 0 to 1 (NULL when nothing runs).
    ADD COLUMN progress real CHECK (progress BETWEEN 0 AND 1),
    -- Versions handed out so far: each processing attempt writes a fresh
    -- media/{id}/v{n}/ prefix, so a retry never overwrites what a player may be reading.
    ADD COLUMN media_versions integer NOT NULL DEFAULT 0 CHECK (media_versions >= 0),
    -- The published version: set in the one UPDATE that makes it visible, after every
    -- object of that version is in the media bucket.
    ADD COLUMN published_version integer CHECK (published_version > 0),
    ADD COLUMN playlist_path text,
    ADD COLUMN poster_path text,
    ADD COLUMN key_version text CHECK (char_length(key_version) BETWEEN 1 AND 64),
    ADD COLUMN renditions jsonb CHECK (jsonb_typeof(renditions) = 'array'),
    ADD CONSTRAINT videos_published_complete CHECK (
        (published_version IS NULL) = (playlist_path IS NULL)
        AND (published_version IS NULL) = (renditions IS NULL)
        AND (published_version IS NULL) = (key_version IS NULL)
    ),
    ADD CONSTRAINT videos_published_within_handed_out CHECK (
        published_version IS NULL OR published_version <= media_versions
    );

-- The version a job's current attempt writes (from videos.media_versions at its claim), and
-- when its job.requested event reached the stream: a completion retried after a failed put
-- puts it again, one retried after a successful put does not.
ALTER TABLE jobs
    ADD COLUMN media_version integer CHECK (media_version > 0),
    ADD COLUMN requested_at timestamptz;

-- API: create (INSERT; the status starts from its default, UPLOADING), complete and abort
-- the upload (UPDATE), write the job at completion.
GRANT INSERT (id, title, creator, source_uri, content_type, upload_size_bytes,
              upload_part_size, upload_id)
    ON videos TO media_api;
GRANT UPDATE (upload_id) ON videos TO media_api;
GRANT UPDATE (requested_at) ON jobs TO media_api;

-- Worker: hand out a version at the claim, record progress, publish the version.
GRANT UPDATE (progress, media_versions, published_version, playlist_path, poster_path,
              key_version, renditions)
    ON videos TO media_worker;
GRANT UPDATE (media_version) ON jobs TO media_worker;

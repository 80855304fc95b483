"""The media worker: consumes processing jobs from SQS and probes media with ffprobe."""

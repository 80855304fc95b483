"""How a job attempt can fail, split by whether retrying could ever help."""


class PermanentJobError(Exception):
    """The job can never succeed (missing file, unreadable media): fail and dead-letter it."""


class TransientJobError(Exception):
    """Something outside the job failed (timeout, dependency): retry later with backoff."""


class ProbeTimeout(TransientJobError):
    def __init__(self, message: str, *, shutting_down: bool) -> None:
        super().__init__(message)
        self.shutting_down = shutting_down


class TranscodeTimeout(ProbeTimeout):
    """ffmpeg ran past the job's deadline (or the stop timeout) and was killed.

    A ProbeTimeout, so callers handle both deadlines alike: transient, unless it was the
    shutdown deadline (`shutting_down`), when the job is handed back instead."""


class TranscodeStopped(TransientJobError):
    """The worker was asked to stop mid-transcode; ffmpeg was killed and the job is
    handed back for another attempt (transient: nothing is wrong with the media)."""

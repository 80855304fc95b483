"""How a job attempt can fail, split by whether retrying could ever help."""


class PermanentJobError(Exception):
    """The job can never succeed (missing file, unreadable media): fail and dead-letter it."""


class TransientJobError(Exception):
    """Something outside the job failed (timeout, dependency): retry later with backoff."""


class ProbeTimeout(TransientJobError):
    def __init__(self, message: str, *, shutting_down: bool) -> None:
        super().__init__(message)
        self.shutting_down = shutting_down

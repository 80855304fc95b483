"""The content keyring (K3, M5) as the worker reads it: from Secrets Manager, kept for a few
minutes so a busy worker does not read the secret per job, and so a rotation (a new
`current` version) reaches new titles within that time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from services.common.aws import AWS_ERRORS
from services.common.content_keys import ContentKeyError, Keyring, load_keyring
from services.worker.errors import TransientJobError

KEYRING_TTL_SECONDS = 300.0


class KeyringSource:
    def __init__(
        self,
        secrets: Any,
        secret_arn: str,
        *,
        ttl_seconds: float = KEYRING_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secrets = secrets
        self._arn = secret_arn
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keyring: Keyring | None = None
        self._fetched_at = 0.0

    def get(self) -> Keyring:
        """The keyring; TransientJobError when it cannot be read or is malformed (an
        operator's fix to the secret lets the retried job through; the media is not at
        fault, so the job is not failed for it)."""
        with self._lock:
            if self._keyring is None or self._clock() - self._fetched_at > self._ttl:
                self._keyring = self._load()
                self._fetched_at = self._clock()
            return self._keyring

    def _load(self) -> Keyring:
        try:
            secret = self._secrets.get_secret_value(SecretId=self._arn)["SecretString"]
        except AWS_ERRORS as error:
            raise TransientJobError(f"cannot read the content-key secret: {error}") from None
        except KeyError:
            raise TransientJobError("the content-key secret has no SecretString") from None
        try:
            return load_keyring(secret)
        except ContentKeyError as error:
            # The message names versions, never key material.
            raise TransientJobError(f"the content-key secret is misconfigured: {error}") from None

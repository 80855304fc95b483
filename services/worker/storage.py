"""The worker's S3 side (M3, M6): the source from the ingest bucket onto scratch, and a
transcode's files into the media bucket under one version's prefix.

A source is fetched by the key the contract derives from the video id, never a key taken
from a message. It is refused before a byte is downloaded when it is larger than the
configured limit or than the scratch space can hold, and it streams to disk in chunks, so
memory stays flat whatever its size.

A version is written object by object with a bounded number of concurrent transfers; it
becomes visible only through the database row the caller updates afterwards, so a
half-written version is never referenced. When publication fails, the caller discards the
prefix (best effort: an orphan is unreferenced, never wrong).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from services.common.aws import AWS_ERRORS, aws_client
from services.common.settings import MediaSettings
from services.contract import MEDIA_PREFIX, media_prefix, source_key
from services.worker.errors import PermanentJobError, TransientJobError
from services.worker.transcode import TranscodeResult

log = logging.getLogger(__name__)

Deadline = Callable[[], tuple[float, bool]]

CHUNK_BYTES = 1024 * 1024
SCRATCH_RESERVE_BYTES = 64 * 1024 * 1024
"""Scratch space kept free beyond the source: the heartbeat, logs and ffmpeg's first output."""
PLAYLIST_CACHE_CONTROL = "max-age=60"
"""Short, as M7's cache policy for playlists: a version's playlists never change, but a
player must not keep a playlist across a republication for long."""
IMMUTABLE_CACHE_CONTROL = "max-age=31536000, immutable"
"""Segments and posters of a version never change (a new attempt writes a new version)."""
# Only these kinds of file are ever published; anything else (a key file above all) is a
# bug in the transcode and stops the publication.
OBJECT_TYPES = {
    ".m3u8": ("application/vnd.apple.mpegurl", PLAYLIST_CACHE_CONTROL),
    ".ts": ("video/mp2t", IMMUTABLE_CACHE_CONTROL),
    ".jpg": ("image/jpeg", IMMUTABLE_CACHE_CONTROL),
}
_DELETE_BATCH = 1000  # DeleteObjects' limit per request
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def s3_client(region: str | None, *, concurrency: int, endpoint_url: str | None = None) -> Any:
    """An S3 client with bounded timeouts and a connection pool for every transfer thread
    (the endpoint, like every boto3 client's, may also come from AWS_ENDPOINT_URL)."""
    return aws_client(
        "s3",
        region=region,
        connect_timeout=5,
        read_timeout=60,  # one chunk of a source or one segment's upload reply
        endpoint_url=endpoint_url,
        max_pool_connections=max(10, concurrency),
    )


def error_code(error: BaseException) -> str | None:
    response = getattr(error, "response", None) or {}
    return (response.get("Error") or {}).get("Code")


@dataclass(frozen=True)
class PublishedObject:
    key: str
    content_type: str
    size: int


class MediaStorage:
    """The ingest and media buckets as one worker uses them."""

    def __init__(
        self,
        s3: Any,
        media: MediaSettings,
        *,
        scratch_reserve_bytes: int = SCRATCH_RESERVE_BYTES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._s3 = s3
        self._media = media
        self._reserve = scratch_reserve_bytes
        self._chunk = chunk_bytes

    # -- the source ------------------------------------------------------------------------

    def fetch_source(
        self,
        video_id: str,
        destination: Path,
        *,
        deadline: Deadline,
        stop_requested: Callable[[], bool],
    ) -> int:
        """Stream the video's source to `destination`; its size in bytes.

        PermanentJobError for a missing source, one larger than the configured maximum or
        than the free scratch space, and for a disk that fills up while writing;
        TransientJobError when the deadline passes or a stop is requested meanwhile."""
        key = source_key(video_id)
        try:
            response = self._s3.get_object(Bucket=self._media.ingest_bucket, Key=key)
        except AWS_ERRORS as error:
            if error_code(error) in _MISSING_CODES:
                raise PermanentJobError(f"the source object {key} does not exist") from None
            raise
        body = response["Body"]
        try:
            size = int(response.get("ContentLength") or 0)
            self._check_fits(size, destination.parent)
            written = self._stream(body, destination, deadline, stop_requested)
        finally:
            with contextlib.suppress(Exception):
                body.close()
        if written != size:
            raise TransientJobError(f"the source download ended after {written} of {size} bytes")
        return written

    def _check_fits(self, size: int, directory: Path) -> None:
        if size > self._media.max_source_bytes:
            raise PermanentJobError(
                f"the source is {size} bytes, more than the {self._media.max_source_bytes}"
                " bytes allowed"
            )
        free = shutil.disk_usage(directory).free - self._reserve
        if size > free:
            raise PermanentJobError(
                f"the source is {size} bytes but the scratch space has only"
                f" {max(0, free)} bytes free"
            )

    def _stream(
        self, body: Any, destination: Path, deadline: Deadline, stop_requested: Callable[[], bool]
    ) -> int:
        written = 0
        try:
            with open(destination, "wb") as file:
                for chunk in body.iter_chunks(self._chunk):
                    _check_time(deadline, stop_requested, "fetching the source")
                    file.write(chunk)
                    written += len(chunk)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise PermanentJobError(
                    f"the scratch space ran out after {written} bytes of the source"
                ) from None
            raise
        return written

    def delete_source(self, video_id: str) -> None:
        """Best effort (M2): the ingest lifecycle removes what this leaves behind."""
        key = source_key(video_id)
        try:
            self._s3.delete_object(Bucket=self._media.ingest_bucket, Key=key)
        except AWS_ERRORS as error:
            log.warning(
                "could not delete the processed source", extra={"key": key, "error": str(error)}
            )

    # -- publication -----------------------------------------------------------------------

    def publish(
        self,
        result: TranscodeResult,
        output_dir: Path,
        *,
        video_id: str,
        version: int,
        deadline: Deadline,
        stop_requested: Callable[[], bool],
    ) -> list[PublishedObject]:
        """Upload every file of `result` under the version's prefix, the master playlist
        last; raises on the first failure (the caller discards the prefix)."""
        prefix = media_prefix(video_id, version)
        files = [_checked(output_dir, name) for name in result.files]
        master = _checked(output_dir, result.master_playlist)
        others = [item for item in files if item[0] != master[0]]
        timing = (deadline, stop_requested)
        uploaded = self._upload_all(others, prefix, timing)
        uploaded += self._upload_all([master], prefix, timing)
        return uploaded

    def _upload_all(
        self, files: list[tuple[str, Path]], prefix: str, timing: tuple[Deadline, Any]
    ) -> list[PublishedObject]:
        if not files:
            return []
        workers = max(1, min(self._media.transfer_concurrency, len(files)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="publish") as pool:
            futures = [
                pool.submit(self._upload, path, prefix + name, timing) for name, path in files
            ]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [future for future in done if future.exception() is not None]
            if failed:
                for future in pending:
                    future.cancel()
                raise failed[0].exception()
        return [future.result() for future in futures]

    def _upload(self, path: Path, key: str, timing: tuple[Deadline, Any]) -> PublishedObject:
        _check_time(*timing, "publishing")
        content_type, cache_control = OBJECT_TYPES[path.suffix]
        size = path.stat().st_size
        with open(path, "rb") as body:
            # No ACL: the media bucket enforces bucket-owner ownership (ACLs disabled).
            self._s3.put_object(
                Bucket=self._media.media_bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                CacheControl=cache_control,
            )
        return PublishedObject(key, content_type, size)

    def discard(self, prefix: str) -> int:
        """Delete every object under `prefix` (a version's, or a video's); how many went.
        Best effort: errors are logged, an orphan is unreferenced."""
        if not prefix.startswith(MEDIA_PREFIX) or not prefix.endswith("/"):
            raise ValueError(f"refusing to discard {prefix!r}: not a media prefix")
        deleted = 0
        try:
            for batch in _batches(self._keys_under(prefix), _DELETE_BATCH):
                self._s3.delete_objects(
                    Bucket=self._media.media_bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
                deleted += len(batch)
        except AWS_ERRORS as error:
            log.warning(
                "could not discard an unpublished version",
                extra={"prefix": prefix, "error": str(error)},
            )
        return deleted

    def discard_other_versions(self, video_id: str, keep: int) -> int:
        """After version `keep` is published: delete what earlier, failed or overtaken
        attempts left under the video's other version prefixes (best effort)."""
        keep_prefix = media_prefix(video_id, keep)
        video_prefix = keep_prefix.rsplit("/", 2)[0] + "/"
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._media.media_bucket, Prefix=video_prefix, Delimiter="/"
            )
            prefixes = [
                entry["Prefix"] for page in pages for entry in page.get("CommonPrefixes", [])
            ]
        except AWS_ERRORS as error:
            log.warning("could not list earlier versions", extra={"error": str(error)})
            return 0
        return sum(self.discard(prefix) for prefix in prefixes if prefix != keep_prefix)

    def _keys_under(self, prefix: str) -> Iterable[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._media.media_bucket, Prefix=prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"]


def _checked(output_dir: Path, name: str) -> tuple[str, Path]:
    """A relative output path as a key suffix and a file; anything that is not a plain
    file of a published kind inside the output directory stops the publication."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise TransientJobError(f"the transcode named a file outside its output: {name!r}")
    path = output_dir / relative
    if path.suffix not in OBJECT_TYPES:
        raise TransientJobError(f"refusing to publish {name!r}: not a playlist, segment or poster")
    if path.is_symlink() or not path.is_file():
        raise TransientJobError(f"the transcode's output {name!r} is not a regular file")
    return relative.as_posix(), path


def _check_time(deadline: Deadline, stop_requested: Callable[[], bool], doing: str) -> None:
    if stop_requested():
        raise TransientJobError(f"stopped while {doing}")
    limit, shutting_down = deadline()
    if time.monotonic() > limit:
        what = "the stop timeout" if shutting_down else "the job timeout"
        raise TransientJobError(f"{what} passed while {doing}")


def _batches(items: Iterable[str], size: int) -> Iterable[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

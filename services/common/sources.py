"""Source references (H1, M3): what a video's `source_path` (API) and a job's `source_uri`
(worker) may be.

The platform reads sources only from its shared media storage, so a source is the path of
a file inside MEDIA_ROOT and nothing else: not a URI (`file:`, `s3:`, `https:` with or
without credentials), not a path outside the root. The API stores it relative and
normalised; the worker applies the same grammar again before it touches the file system,
then resolves symbolic links and checks the real path is still inside the root.

    source  = [ MEDIA_ROOT "/" ] segment *( "/" segment )
    segment = 1 to 255 UTF-8 bytes of printable characters other than "/", "\\" and ":"

`.` and empty segments are dropped and `a/..` collapses (lexically); what is left must not
climb out of the root or be the root itself.
"""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath
from typing import Any

from services.common.text import text_problem

PATH_MAX_BYTES = 4096
"""Linux PATH_MAX: no longer path can be opened."""
NAME_MAX_BYTES = 255
"""Linux NAME_MAX: no longer file or directory name exists."""
# ":" starts a URI scheme (and an ffmpeg protocol: `concat:`, `subfile:`), "\\" a Windows
# path or an escape; neither is part of a file name the platform writes.
_FORBIDDEN = {":": "a URI or a ':'", "\\": "a backslash"}


class SourceError(ValueError):
    """Not a source reference the platform can read; the message says why."""


def normalise_source(
    value: Any, media_root: PurePosixPath | str, *, max_chars: int = PATH_MAX_BYTES
) -> str:
    """`value` as a normalised path relative to `media_root`, or SourceError.

    Lexical only: the file system is not consulted (the API does not mount it).
    """
    if not isinstance(value, str) or not value:
        raise SourceError("is required and must be a string")
    if len(value) > max_chars or len(value.encode("utf-8", "replace")) > PATH_MAX_BYTES:
        raise SourceError(f"must be at most {max_chars} characters")
    problem = text_problem(value)
    if problem is not None:
        raise SourceError(problem)
    for character, what in _FORBIDDEN.items():
        if character in value:
            raise SourceError(f"must be a path inside the media root, not {what}")
    path = PurePosixPath(posixpath.normpath(value))
    if path.is_absolute():
        root = PurePosixPath(posixpath.normpath(str(media_root)))
        if not path.is_relative_to(root):
            raise SourceError(f"must be inside {media_root}")
        path = path.relative_to(root)
    relative = posixpath.normpath(str(path))
    if relative in {".", ".."} or relative.startswith("../"):
        raise SourceError("must name a file inside the media root")
    if any(len(part.encode("utf-8")) > NAME_MAX_BYTES for part in relative.split("/")):
        raise SourceError(f"has a name longer than {NAME_MAX_BYTES} bytes")
    return relative

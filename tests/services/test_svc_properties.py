"""H6: property-based tests (Hypothesis) of everything that decodes outside input: request
validation, queue-message parsing, list-cursor decoding and the bounded JSON decoder.

Each property says what every input ends as (H1, H3): a value that satisfies the rules, or
the one expected refusal (a 4xx ApiError, an EventError, a JsonError), never any other
exception. Bounded in time (examples and a per-example deadline), no example database, so
they run in the normal test command."""

from __future__ import annotations

import base64
import contextlib
import json
import string
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.http import ApiError, Request
from services.api.validation import decode_cursor, encode_cursor, parse_create, parse_parts
from services.common import safejson
from services.common.events import JOB_REQUESTED, EventError, new_event, parse_message_body
from services.common.text import text_problem
from services.common.uploads import UploadedPart, check_parts, checksum_problem, plan_parts
from services.common.videos import STATUSES
from services.contract import (
    DEFAULT_UPLOAD_CONTENT_TYPES,
    PART_URLS_PER_REQUEST,
    S3_MAX_PART_BYTES,
    S3_MAX_PARTS,
    S3_MIN_PART_BYTES,
    UPLOAD_MAX_BYTES_CEILING,
)

BOUNDED = settings(
    max_examples=100,
    deadline=1000,  # ms per example; the slowest here take a few ms
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Any code point, surrogates and controls included, biased towards the troublesome ones.
hostile_char = st.one_of(
    st.characters(codec=None, categories=None),
    st.sampled_from(["\ud800", "\udfff", "\x00", "\x7f", "\x85", "\x9b", "\u2028", "/", ":", "\\"]),
)
hostile_text = st.text(hostile_char, max_size=60)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**80), max_value=10**80),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=20,
)


def _refusal(error: ApiError) -> None:
    assert 400 <= error.status < 500
    assert error.to_response()["statusCode"] == error.status
    json.loads(error.to_response()["body"])  # the stable body always serialises


# --- request validation -------------------------------------------------------------


MAX_BYTES = 10 * 2**30
sizes = st.one_of(
    json_values,
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=1, max_value=2 * MAX_BYTES),
)
content_types = st.one_of(json_values, st.sampled_from(DEFAULT_UPLOAD_CONTENT_TYPES), hostile_text)


@BOUNDED
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "title": json_values,
                "creator": json_values,
                "size_bytes": sizes,
                "content_type": content_types,
            }
        ),
        st.fixed_dictionaries(
            {
                "title": hostile_text,
                "creator": hostile_text,
                "size_bytes": sizes,
                "content_type": content_types,
            }
        ),
    )
)
def test_h6_h1_m1_create_validation_accepts_only_clean_fields_or_refuses_with_a_4xx(document):
    try:
        command = parse_create(
            document, max_bytes=MAX_BYTES, content_types=DEFAULT_UPLOAD_CONTENT_TYPES
        )
    except ApiError as error:
        _refusal(error)
        if error.status == 413:
            assert document["size_bytes"] > MAX_BYTES
        return
    for text in (command.title, command.creator):
        assert text_problem(text) is None
        text.encode("utf-8")  # the database driver can send it
    assert 1 <= len(command.title) <= 200 and 1 <= len(command.creator) <= 100
    assert type(command.size_bytes) is int and 1 <= command.size_bytes <= MAX_BYTES
    assert command.content_type in DEFAULT_UPLOAD_CONTENT_TYPES


digests = st.builds(lambda raw: base64.b64encode(raw).decode(), st.binary(min_size=32, max_size=32))
part_items = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "part_number": st.one_of(json_values, st.integers(-5, S3_MAX_PARTS + 5)),
            "checksum_sha256": st.one_of(json_values, digests, hostile_text),
        }
    ),
    st.fixed_dictionaries({"part_number": st.integers(1, 50), "checksum_sha256": digests}),
)


@BOUNDED
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries({"parts": st.one_of(json_values, st.lists(part_items, max_size=8))}),
        st.builds(
            lambda count, digest: {
                "parts": [{"part_number": n, "checksum_sha256": digest} for n in range(1, count)]
            },
            st.integers(PART_URLS_PER_REQUEST - 1, PART_URLS_PER_REQUEST + 2),
            digests,
        ),
    )
)
def test_h6_h1_m1_part_requests_are_distinct_numbered_parts_with_digests_or_a_400(document):
    try:
        parts = parse_parts(document)
    except ApiError as error:
        _refusal(error)
        assert error.status == 400 and error.field is not None
        return
    assert 1 <= len(parts) <= PART_URLS_PER_REQUEST
    numbers = [part.part_number for part in parts]
    assert len(set(numbers)) == len(numbers)
    for part in parts:
        assert type(part.part_number) is int and 1 <= part.part_number <= S3_MAX_PARTS
        assert len(base64.b64decode(part.checksum_sha256, validate=True)) == 32


@BOUNDED
@given(st.one_of(digests, hostile_text, st.text("ABCabc0123+/=", min_size=40, max_size=48)))
def test_h6_m1_a_checksum_is_accepted_only_as_the_canonical_base64_of_32_bytes(value):
    if checksum_problem(value) is None:
        assert base64.b64encode(base64.b64decode(value, validate=True)).decode() == value
        assert len(base64.b64decode(value)) == 32


@BOUNDED
@given(st.integers(min_value=1, max_value=UPLOAD_MAX_BYTES_CEILING))
def test_h6_m1_every_allowed_size_has_a_plan_s3_accepts(size):
    """AWS-PITFALLS 118: at most 10,000 parts of 5 MiB to 5 GiB, whole MiB, the last one
    holding the remainder (1 to part_size bytes)."""
    plan = plan_parts(size)
    assert S3_MIN_PART_BYTES <= plan.part_size <= S3_MAX_PART_BYTES
    assert plan.part_size % 2**20 == 0
    assert 1 <= plan.part_count <= S3_MAX_PARTS
    assert 1 <= plan.expected_size(plan.part_count, size) <= plan.part_size
    assert (plan.part_count - 1) * plan.part_size + plan.expected_size(
        plan.part_count, size
    ) == size


def _nested(depth: int, opener: str) -> bytes:
    return (opener * depth).encode()


def _long_number(digits: int) -> bytes:
    return ('{"title": ' + "9" * digits + "}").encode()


bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(_nested, st.integers(1, 3000), st.sampled_from(["[", '{"a":', "[{", '{"t":['])),
    st.builds(_long_number, st.integers(1, 6000)),
)


@BOUNDED
@given(bodies)
def test_h6_h1_any_body_is_a_json_document_or_a_4xx(body):
    request = Request(
        method="POST",
        resource="/videos",
        path="/videos",
        headers={"content-type": "application/json"},
        body=body,
    )
    try:
        request.json_body()
    except ApiError as error:
        _refusal(error)


# --- message parsing ----------------------------------------------------------------


def _event_document(**changes):
    event = new_event(
        JOB_REQUESTED, video_id=str(uuid.uuid4()), job_id=str(uuid.uuid4()), source_uri="a.mp4"
    )
    return {**event.to_dict(), **changes}


message_bodies = st.one_of(
    st.text(max_size=200),
    st.builds(json.dumps, json_values),
    st.builds(lambda v: json.dumps(_event_document(extra=v)), json_values),
    st.builds(
        lambda key, v: json.dumps(_event_document(**{key: v})),
        st.sampled_from(["type", "version", "video_id", "job_id", "source_uri", "occurred_at"]),
        json_values,
    ),
    st.builds(
        lambda v: json.dumps({"data": base64.b64encode(json.dumps(v).encode()).decode()}),
        json_values,
    ),
    st.builds(lambda v: json.dumps({"data": v}), json_values),
    st.builds(
        lambda depth: json.dumps({"data": "x"}).replace('"x"', "[" * depth + "]" * depth),
        st.integers(1, 3000),
    ),
)


@BOUNDED
@given(message_bodies)
def test_h6_h3_any_message_body_is_an_event_or_an_event_error(body):
    try:
        event = parse_message_body(body)
    except EventError as error:
        assert str(error)
        return
    uuid.UUID(event.job_id), uuid.UUID(event.video_id)
    assert text_problem(event.source_uri) is None


@BOUNDED
@given(
    st.dictionaries(
        st.text(string.ascii_lowercase, min_size=1, max_size=8),
        st.one_of(st.none(), st.booleans(), st.integers(-(10**18), 10**18), hostile_text),
    )
)
def test_h6_h3_a_valid_event_round_trips_through_a_message_body(extra):
    document = {k: v for k, v in extra.items() if isinstance(v, (str, int, bool)) or v is None}
    event = new_event(
        JOB_REQUESTED,
        video_id=str(uuid.uuid4()),
        job_id=str(uuid.uuid4()),
        source_uri="clips/ok.mp4",
        **{k: v for k, v in document.items() if text_problem(str(v)) is None},
    )
    for body in (
        event.to_json(),
        json.dumps({"data": base64.b64encode(event.to_json().encode()).decode()}),
    ):
        try:
            parsed = parse_message_body(body)
        except EventError:
            # Only a detail key that collides with a core field may break the event.
            assert set(document) & {"type", "version", "event_id", "video_id", "job_id"}
            return
        assert (parsed.job_id, parsed.video_id, parsed.type) == (
            event.job_id,
            event.video_id,
            event.type,
        )


# --- cursor decoding ----------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


cursors = st.one_of(
    st.text(max_size=300),
    st.builds(lambda v: _b64(json.dumps(v).encode()), json_values),
    st.builds(
        lambda moment, offset, status: _b64(
            json.dumps(
                {
                    "u": moment.replace(tzinfo=timezone(timedelta(minutes=offset))).isoformat(),
                    "i": str(uuid.uuid4()),
                    "s": status,
                }
            ).encode()
        ),
        st.datetimes(),
        st.integers(-14 * 60, 14 * 60),
        st.sampled_from([None, *STATUSES]),
    ),
    st.builds(lambda raw: _b64(raw), st.binary(max_size=200)),
)


@BOUNDED
@given(cursors, st.sampled_from([None, *STATUSES]))
def test_h6_h1_any_cursor_is_a_position_or_a_400(cursor, status):
    try:
        uploaded_at, video_id = decode_cursor(cursor, status)
    except ApiError as error:
        _refusal(error)
        assert error.field == "cursor"
        return
    assert uploaded_at.tzinfo is not None
    uploaded_at.astimezone(UTC)
    assert isinstance(video_id, uuid.UUID)


@BOUNDED
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.uuids(),
    st.sampled_from([None, *STATUSES]),
)
def test_h6_h1_every_issued_cursor_decodes_to_its_position(moment, video_id, status):
    assert decode_cursor(encode_cursor(moment, video_id, status), status) == (moment, video_id)


# --- the bounded decoder ------------------------------------------------------------


@BOUNDED
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400)))
def test_h6_bounded_decoder_raises_only_json_error(data):
    with contextlib.suppress(safejson.JsonError):
        safejson.loads(data, max_bytes=1000)


finite_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(st.characters(codec="utf-8"), max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=15,
)


@BOUNDED
@given(finite_values)
def test_h6_bounded_decoder_reads_back_what_json_writes_within_its_limits(value):
    text = json.dumps(value)
    assert safejson.loads(text, max_bytes=len(text.encode()) + 1) == value


@pytest.mark.parametrize("depth", [32, 33])
def test_h6_depth_limit_is_exact(depth):
    text = "[" * depth + "]" * depth
    if depth <= safejson.DEFAULT_MAX_DEPTH:
        assert safejson.loads(text, max_bytes=100) is not None
    else:
        with pytest.raises(safejson.JsonError, match="nested deeper"):
            safejson.loads(text, max_bytes=100)


@BOUNDED
@given(
    st.integers(min_value=1, max_value=40 * 2**20),
    st.data(),
)
def test_h6_m1_part_check_accepts_exactly_the_planned_parts_and_names_the_first_wrong_one(
    size, data
):
    plan = plan_parts(size)
    parts = [
        UploadedPart(n, plan.expected_size(n, size), f'"etag{n}"', None)
        for n in range(1, plan.part_count + 1)
    ]
    assert check_parts(parts, plan, size) is None
    victim = data.draw(st.integers(1, plan.part_count))
    change = data.draw(st.sampled_from(["drop", "grow", "shrink", "extra"]))
    broken = [part for part in parts if not (change == "drop" and part.part_number == victim)]
    if change in ("grow", "shrink"):
        delta = 1 if change == "grow" else -1
        broken = [
            UploadedPart(p.part_number, p.size + delta, p.etag, None)
            if p.part_number == victim
            else p
            for p in broken
        ]
    if change == "extra":
        victim = plan.part_count + 1
        broken.append(UploadedPart(victim, 1, '"extra"', None))
    issue = check_parts(broken, plan, size)
    assert issue is not None and issue.part_number == victim
    assert issue.code == ("upload_incomplete" if change == "drop" else "part_size_mismatch")

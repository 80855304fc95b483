"""M5/K3 per-title keys: derivation from the content keyring, rotation, and the keyring's
validation, whose errors never carry key material."""

from __future__ import annotations

import base64
import json

import pytest

from services.common.content_keys import ContentKeyError, Keyring, load_keyring
from services.contract import CONTENT_KEY_BYTES

pytestmark = pytest.mark.services

K1 = base64.b64encode(b"1" * CONTENT_KEY_BYTES).decode()
K2 = base64.b64encode(b"2" * CONTENT_KEY_BYTES).decode()
VIDEO = "3f0c2a4e-8d1b-4c57-9a6e-2b7d9c1e5f30"


def _ring(current: str = "k2", **keys: str) -> Keyring:
    return load_keyring(json.dumps({"current": current, "keys": keys or {"k1": K1, "k2": K2}}))


def test_m5_title_key_is_a_fixed_hkdf_of_id_and_version():
    """Known answer: changing the derivation would make every published title unplayable."""
    key = _ring().title_key(VIDEO, "k1")
    assert key.version == "k1"
    assert key.key.hex() == "1a38f951c44e93eabc5e2e805bf8cc37"
    assert len(key.key) == 16


def test_m5_keys_differ_per_title_and_per_version_and_current_is_the_default():
    ring = _ring()
    default = ring.title_key(VIDEO)
    assert default.version == "k2"
    assert default == ring.title_key(VIDEO, "k2")
    keys = {
        ring.title_key(VIDEO, "k1").key,
        default.key,
        ring.title_key(VIDEO + "0", "k2").key,
        ring.title_key("other", "k2").key,
    }
    assert len(keys) == 4


def test_m5_rotation_leaves_titles_keyed_from_the_old_version_derivable():
    before = _ring("k1", k1=K1)
    title = before.title_key(VIDEO)
    assert title.version == "k1"
    after = _ring("k2", k1=K1, k2=K2)
    assert after.title_key(VIDEO, title.version) == title
    assert after.title_key(VIDEO).key != title.key  # new titles get the new version


def test_m5_key_material_is_never_in_a_repr():
    ring = _ring()
    key = ring.title_key(VIDEO)
    for text in (repr(ring), repr(key), str(key)):
        assert key.key.hex() not in text
        assert repr(key.key)[2:-1] not in text
        assert K1 not in text and K2 not in text


def test_m5_an_unknown_version_is_refused_by_name():
    with pytest.raises(ContentKeyError, match="no version 'k9'"):
        _ring().title_key(VIDEO, "k9")
    with pytest.raises(ContentKeyError, match="not a valid version"):
        _ring().title_key(VIDEO, "../k1")


@pytest.mark.parametrize("video_id", ["", "a\x00b", "x" * 129])
def test_m5_a_video_id_that_could_collide_or_is_empty_is_refused(video_id):
    with pytest.raises(ContentKeyError, match="video id"):
        _ring().title_key(video_id)


SHORT = base64.b64encode(b"s" * 16).decode()


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (f"not json {K1}", "not JSON"),
        (json.dumps([K1]), "not a JSON object"),
        (json.dumps({"current": "k1"}), "'keys' must be a non-empty object"),
        (json.dumps({"current": "k1", "keys": {}}), "'keys' must be a non-empty object"),
        (json.dumps({"keys": {"k1": K1}}), "'current' must be a version name"),
        (json.dumps({"current": "k3", "keys": {"k1": K1}}), "'k3' is not among its 'keys'"),
        (json.dumps({"current": "k1", "keys": {K1: K1}}), "does not match"),
        (json.dumps({"current": "k1", "keys": {"k1": K1 + "!"}}), "'k1' is not valid base64"),
        (json.dumps({"current": "k1", "keys": {"k1": SHORT}}), "'k1' is 16 bytes, must be 32"),
        (json.dumps({"current": "k1", "keys": {"k1": 12345}}), "'k1' is not a base64 string"),
    ],
)
def test_k3_malformed_keyring_says_what_is_wrong_without_key_material(secret, reason):
    with pytest.raises(ContentKeyError, match=reason) as caught:
        load_keyring(secret)
    message = str(caught.value)
    assert K1 not in message and SHORT not in message
    assert K1[:12] not in message
    # A traceback would print a chained decoder error, which quotes the secret's text.
    error = caught.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_k3_the_test_stacks_keyring_loads():
    """The keyring the service tests store in Secrets Manager has the contract's shape."""
    from conftest import CONTENT_KEYRING

    ring = load_keyring(json.dumps(CONTENT_KEYRING))
    assert ring.current == "k2" and ring.versions == ("k1", "k2")

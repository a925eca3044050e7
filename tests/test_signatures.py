"""Signed inbound requests: the right signature passes; unsigned, altered, stale and replayed
requests do not."""

from __future__ import annotations

import pytest

from hub.api.signatures import BadSignature, sign, verify

SECRET = b"shared-with-the-vendor"
NOW = 1_790_000_000


def test_a_signed_fresh_request_passes():
    body = b'{"ticket": 7}'
    verify(SECRET, body, timestamp=str(NOW), signature=sign(SECRET, NOW, body), now=NOW + 5)


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "now", "reason"),
    [
        (None, None, b"{}", NOW, "unsigned"),
        (str(NOW), None, b"{}", NOW, "unsigned"),
        ("yesterday", "00", b"{}", NOW, "Unix seconds"),
        (str(NOW), sign(SECRET, NOW, b"{}"), b'{"x": 1}', NOW, "does not match"),
        (str(NOW), sign(b"other", NOW, b"{}"), b"{}", NOW, "does not match"),
        (str(NOW), sign(SECRET, NOW, b"{}"), b"{}", NOW + 301, "replay"),
        (str(NOW + 400), sign(SECRET, NOW + 400, b"{}"), b"{}", NOW, "replay"),
    ],
)
def test_unsigned_altered_and_stale_requests_are_refused(timestamp, signature, body, now, reason):
    with pytest.raises(BadSignature, match=reason) as refused:
        verify(SECRET, body, timestamp=timestamp, signature=signature, now=now)
    assert body.decode() not in str(refused.value)  # never the body

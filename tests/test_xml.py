"""The SDK's XML parser refuses what makes XML dangerous: entity expansion, external entities,
DTDs, oversized documents; and reads plain documents."""

from __future__ import annotations

import pytest

from hub import sdk

BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">'.encode()
        for n in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)


def test_a_plain_document_is_read():
    root = sdk.xml.parse(b'<cXML payloadID="1"><Response><Status code="200"/></Response></cXML>')
    assert root.find("Response/Status").get("code") == "200"


@pytest.mark.parametrize(
    "document",
    [
        BOMB,
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        b'<!DOCTYPE x SYSTEM "http://127.0.0.1:1/evil.dtd"><x/>',
        b"<x><unclosed></x>",
    ],
    ids=["billion laughs", "external entity", "external DTD", "malformed"],
)
def test_dangerous_or_broken_documents_are_refused(document):
    with pytest.raises(sdk.BadRecord) as refused:
        sdk.xml.parse(document)
    assert "passwd" not in str(refused.value) and "lol" not in str(refused.value)


def test_an_oversized_document_is_refused_before_parsing():
    with pytest.raises(sdk.BadRecord, match="over the limit"):
        sdk.xml.parse(b"<x>" + b"a" * 100 + b"</x>", max_bytes=50)

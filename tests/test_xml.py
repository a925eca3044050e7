"""The SDK's XML parser refuses what makes XML dangerous: entity expansion, external entities,
internal DTD subsets, oversized documents; reads plain documents, and cXML documents with their
external DOCTYPE, which it never fetches."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:1/secret">]><x>&e;</x>',
        b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:1/evil.dtd"> %p;]><x/>',
        b'<!DOCTYPE x SYSTEM "http://127.0.0.1:1/evil.dtd" [<!ATTLIST x a CDATA "v">]><x/>',
        b"<!DOCTYPE x [<!ELEMENT x ANY>]><x/>",
        b'<!DOCTYPE x SYSTEM "http://127.0.0.1:1/evil.dtd"><x>&e;</x>',
        b"<x><unclosed></x>",
    ],
    ids=[
        "billion laughs",
        "external entity (file)",
        "external entity (network)",
        "external parameter entity",
        "external DTD with an internal subset",
        "internal subset without entities",
        "entity the external DTD would declare",
        "malformed",
    ],
)
def test_dangerous_or_broken_documents_are_refused(document):
    with pytest.raises(sdk.BadRecord) as refused:
        sdk.xml.parse(document)
    assert "passwd" not in str(refused.value) and "lol" not in str(refused.value)


def test_an_oversized_document_is_refused_before_parsing():
    with pytest.raises(sdk.BadRecord, match="over the limit"):
        sdk.xml.parse(b"<x>" + b"a" * 100 + b"</x>", max_bytes=50)


CXML_DOCTYPE = b'<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/cXML.dtd">'


def test_a_cxml_document_with_its_external_doctype_is_read():
    root = sdk.xml.parse(
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        + CXML_DOCTYPE
        + b'\n<cXML payloadID="1@supplier" xml:lang="en-US"><Response>'
        b'<Status code="200" text="OK">Tom &amp; Jerry&#8217;s</Status></Response></cXML>'
    )
    assert root.tag == "cXML"
    assert root.find("Response/Status").text == "Tom & Jerry\u2019s"


def test_the_external_dtd_is_never_fetched_nor_read(tmp_path):
    # given a DTD served over HTTP and one on disk, each declaring the entity the document uses
    hits: list[str] = []

    class Dtd(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'<!ENTITY leak "from the network">'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Dtd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    on_disk = tmp_path / "local.dtd"
    on_disk.write_text('<!ENTITY leak "from the disk">')
    try:
        for url in (f"http://127.0.0.1:{server.server_port}/cXML.dtd", on_disk.as_uri()):
            bare = f'<!DOCTYPE cXML SYSTEM "{url}"><cXML/>'.encode()
            using = f'<!DOCTYPE cXML SYSTEM "{url}"><cXML>&leak;</cXML>'.encode()

            # when documents naming it are parsed
            assert sdk.xml.parse(bare).tag == "cXML"
            with pytest.raises(sdk.BadRecord, match="undefined entity"):
                sdk.xml.parse(using)
    finally:
        server.shutdown()
        server.server_close()

    # then the DTD was never asked for: its entity stayed undefined
    assert hits == []

"""Parsing XML from outside (cXML documents, vendor exports) safely: no entity declarations, no
internal DTD subsets, nothing external ever fetched, and a size limit, so an entity-expansion
bomb or an XXE request is refused as a bad document instead of exhausting memory or reading the
hub's files.

A document type declaration that only names an external DTD is accepted, because every real cXML
document starts with one (``<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/
cXML.dtd">``); the DTD it names is never fetched nor read, so it can neither expand nor reach
anything. One with an internal subset (``[ ... ]``) is refused whatever the subset holds.

    root = sdk.xml.parse(body)          # an xml.etree.ElementTree.Element
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, DTDForbidden
from defusedxml.ElementTree import DefusedXMLParser

from hub.sdk.errors import BadRecord

#: The largest document taken (10 MiB): purchasing documents are far smaller.
MAX_BYTES = 10 * 1024 * 1024


class BadXml(BadRecord):
    """A document refused: malformed, too large, or using DTD subsets or entities."""


class _ExternalDoctypeOnly(DefusedXMLParser):
    """defusedxml's parser with entities and external references forbidden, and a DOCTYPE
    allowed only without an internal subset (expat never loads the external one: parameter
    entity parsing stays off, and an external reference would be refused)."""

    def __init__(self) -> None:
        super().__init__(forbid_dtd=False, forbid_entities=True, forbid_external=True)
        self.parser.StartDoctypeDeclHandler = self._refuse_internal_subset

    def _refuse_internal_subset(
        self, name: str, sysid: str | None, pubid: str | None, has_internal_subset: int
    ) -> None:
        if has_internal_subset:
            raise DTDForbidden(name, sysid, pubid)


def parse(data: bytes, *, max_bytes: int = MAX_BYTES) -> Element:
    """The document's root element; BadXml (with a reason, never the content) if it is not a
    plain, well-formed document within `max_bytes`."""
    if len(data) > max_bytes:
        raise BadXml(f"the document is {len(data):,} bytes, over the limit of {max_bytes:,}")
    parser = _ExternalDoctypeOnly()
    try:
        parser.feed(data)
        return parser.close()
    except DefusedXmlException as error:
        raise BadXml(
            f"refused: {type(error).__name__} (entities, internal DTD subsets and external "
            "references are not accepted)"
        ) from None
    except ParseError as error:
        raise BadXml(f"not well-formed XML: {error}") from None
    except (ValueError, RecursionError) as error:
        raise BadXml(f"not a document this hub reads: {type(error).__name__}") from None

"""Parsing XML from outside (cXML documents, vendor exports) safely: no DTDs, no entities, no
external references, and a size limit, so an entity-expansion bomb or an XXE request is refused
as a bad document instead of exhausting memory or reading the hub's files.

    root = sdk.xml.parse(body)          # an xml.etree.ElementTree.Element
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe
from defusedxml import DefusedXmlException

from hub.sdk.errors import BadRecord

#: The largest document taken (10 MiB): purchasing documents are far smaller.
MAX_BYTES = 10 * 1024 * 1024


class BadXml(BadRecord):
    """A document refused: malformed, too large, or using DTDs or entities."""


def parse(data: bytes, *, max_bytes: int = MAX_BYTES) -> Element:
    """The document's root element; BadXml (with a reason, never the content) if it is not a
    plain, well-formed document within `max_bytes`."""
    if len(data) > max_bytes:
        raise BadXml(f"the document is {len(data):,} bytes, over the limit of {max_bytes:,}")
    try:
        return safe.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as error:
        raise BadXml(
            f"refused: {type(error).__name__} (DTDs and entities are not accepted)"
        ) from None
    except ParseError as error:
        raise BadXml(f"not well-formed XML: {error}") from None
    except (ValueError, RecursionError) as error:
        raise BadXml(f"not a document this hub reads: {type(error).__name__}") from None

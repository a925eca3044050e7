"""Pagination: the four ways vendor APIs hand out a long list, each as an async iterator of pages.

Every page says where it came from (`position`) and where the next one is (`next`), so a
connector can checkpoint after each page and resume there: offset/limit, page number,
cursor (next token) and RFC 8288 ``Link: <...>; rel="next"`` headers. Each style takes `start`
to resume from a stored position. Empty pages are not yielded.

Offset and page-number walks end at the first empty page, not at a short one: many APIs cap the
page size below what was asked, and a short page then says nothing about the end. It costs one
request per walk, and `next` of the last page is where new records will appear.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

from hub.sdk.errors import ConnectorError
from hub.sdk.http.client import HttpClient, JsonResponse, Params

#: Where a page's records are in its body: a key of the body object, or a function of the body.
Items = str | Callable[[Any], list[Any]]


class Page(NamedTuple):
    """One page: its records, the position that fetched it (None for the first page of a cursor
    or link walk not resuming), the position of the next page (None when the API says there is
    none) and the whole response."""

    items: list[Any]
    position: int | str | None
    next: int | str | None
    response: JsonResponse


def _items_of(items: Items, response: JsonResponse) -> list[Any]:
    if callable(items):
        found = items(response.data)
    else:
        found = response.data.get(items) if isinstance(response.data, dict) else None
    if not isinstance(found, list):
        where = "the body" if callable(items) else f"{items!r} of the body"
        raise ConnectorError(
            f"{response.url.with_query(None)}: {where} is {type(found).__name__}, not a list of records"
        )
    return found


async def offset_pages(
    client: HttpClient,
    path: str,
    *,
    items: Items,
    params: Params | None = None,
    limit: int = 100,
    start: int = 0,
    offset_param: str = "offset",
    limit_param: str = "limit",
) -> AsyncIterator[Page]:
    """``?offset=0&limit=100``, then the offset after the records received, until a page is
    empty. `next` is the offset of the next page."""
    offset = start
    while True:
        response = await client.request(
            "GET", path, params={**(params or {}), offset_param: offset, limit_param: limit}
        )
        found = _items_of(items, response)
        if not found:
            return
        yield Page(found, offset, offset + len(found), response)
        offset += len(found)


async def page_number_pages(
    client: HttpClient,
    path: str,
    *,
    items: Items,
    params: Params | None = None,
    size: int = 100,
    first: int = 1,
    start: int | None = None,
    page_param: str = "page",
    size_param: str = "per_page",
) -> AsyncIterator[Page]:
    """``?page=1&per_page=100``, ``?page=2&per_page=100``, … until a page is empty. `first` is
    the API's first page number (0 or 1)."""
    number = first if start is None else start
    while True:
        response = await client.request(
            "GET", path, params={**(params or {}), page_param: number, size_param: size}
        )
        found = _items_of(items, response)
        if not found:
            return
        yield Page(found, number, number + 1, response)
        number += 1


async def cursor_pages(
    client: HttpClient,
    path: str,
    *,
    items: Items,
    next_cursor: Callable[[Any], str | None],
    params: Params | None = None,
    start: str | None = None,
    cursor_param: str = "cursor",
) -> AsyncIterator[Page]:
    """``?cursor=<token>`` with the token `next_cursor` finds in each body; no token or an empty
    page ends the walk. The first request carries no cursor unless resuming from `start`."""
    cursor = start
    while True:
        query = dict(params or {})
        if cursor is not None:
            query[cursor_param] = cursor
        response = await client.request("GET", path, params=query)
        found = _items_of(items, response)
        following = next_cursor(response.data) if found else None
        if following is not None and following == cursor:
            raise ConnectorError(f"{path}: the API returned the cursor it was given ({cursor!r})")
        if found:
            yield Page(found, cursor, following, response)
        if following is None:
            return
        cursor = following


async def link_pages(
    client: HttpClient,
    path: str,
    *,
    items: Items,
    params: Params | None = None,
    start: str | None = None,
) -> AsyncIterator[Page]:
    """Follow ``Link: <url>; rel="next"`` (RFC 8288) until a response has none. `next` is the
    absolute URL of the next page; `start` resumes from one."""
    position = start
    while True:
        response = await client.request(
            "GET", position or path, params=None if position else params
        )
        found = _items_of(items, response)
        link = response.links.get("next")
        following = str(link["url"]) if link is not None else None
        if following is not None and following == str(response.url):
            raise ConnectorError(f"{path}: the next-page link points to the same page")
        if found:
            yield Page(found, position, following, response)
        if following is None:
            return
        position = following

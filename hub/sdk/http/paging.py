"""Pagination: the four ways vendor APIs hand out a long list, each as an async iterator of pages.

Every page says where it came from (`position`) and where the next one is (`next`), so a
connector can checkpoint after each page and resume there: offset/limit, page number,
cursor (next token) and RFC 8288 ``Link: <...>; rel="next"`` headers. Empty pages are not
yielded. Each style takes `start` to resume from a stored position.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

from hub.sdk.errors import ConnectorError
from hub.sdk.http.client import HttpClient, JsonResponse, Params

#: Where a page's records are in its body: a key of the body object, or a function of the body.
Items = str | Callable[[Any], list[Any]]


class Page(NamedTuple):
    """One page: its records, the position that fetched it (None for the first page when not
    resuming), the position of the next page (None after the last) and the whole response."""

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
        raise ConnectorError(
            f"{response.url.with_query(None)}: expected a list of records, got {type(found).__name__}"
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
    """``?offset=0&limit=100``, ``?offset=100&limit=100``, …; a page shorter than `limit` is
    the last. `next` is the offset of the next page."""
    offset = start
    while True:
        response = await client.request(
            "GET", path, params={**(params or {}), offset_param: offset, limit_param: limit}
        )
        found = _items_of(items, response)
        following = offset + len(found) if len(found) >= limit else None
        if found:
            yield Page(found, offset, following, response)
        if following is None:
            return
        offset = following


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
    """``?page=1&per_page=100``, ``?page=2&per_page=100``, …; a page shorter than `size` is the
    last. `first` is the API's first page number (0 or 1)."""
    number = first if start is None else start
    while True:
        response = await client.request(
            "GET", path, params={**(params or {}), page_param: number, size_param: size}
        )
        found = _items_of(items, response)
        following = number + 1 if len(found) >= size else None
        if found:
            yield Page(found, number, following, response)
        if following is None:
            return
        number = following


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

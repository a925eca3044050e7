"""Atlassian Document Format (ADF) to plain text and back, for Jira descriptions and comments.

Jira Cloud's REST API v3 carries rich text as an ADF document: ``{"type": "doc", "version": 1,
"content": [block nodes]}``, blocks (paragraph, heading, lists, code, quotes, panels, tables)
holding inline nodes (text, hardBreak, mention, emoji, inlineCard, date, status). Canonical
tickets keep plain text: blocks become paragraphs separated by a blank line, a hard break a
newline, list items lines starting ``- `` (or ``1. ``), and inline nodes their text. Writing
goes the other way: each blank-line-separated paragraph one ADF paragraph, its single newlines
hard breaks. Webhooks and the REST API v2 give the text as a string: it is kept as it is.
"""

from __future__ import annotations

from typing import Any

INLINE = frozenset({"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status"})


def to_text(document: Any) -> str | None:
    """The plain text of an ADF document (a string is returned as is, None stays None);
    ValueError if `document` is neither."""
    if document is None or isinstance(document, str):
        return document
    if not isinstance(document, dict):
        raise ValueError(f"an ADF document is an object, not {type(document).__name__}")
    return _block(document).strip("\n")


def _inline(node: dict[str, Any]) -> str:
    kind, attrs = _kind(node), node.get("attrs")
    attrs = attrs if isinstance(attrs, dict) else {}
    if kind == "text":
        return str(node.get("text") or "")
    if kind == "hardBreak":
        return "\n"
    if kind in ("mention", "emoji", "status"):
        return str(attrs.get("text") or attrs.get("shortName") or "")
    if kind == "inlineCard":
        return str(attrs.get("url") or "")
    if kind == "date":
        return str(attrs.get("timestamp") or "")
    return ""


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    content = node.get("content")
    return [c for c in content if isinstance(c, dict)] if isinstance(content, list) else []


def _kind(node: dict[str, Any]) -> str:
    kind = node.get("type")
    return kind if isinstance(kind, str) else ""


def _block(node: dict[str, Any]) -> str:
    kind = _kind(node)
    children = _children(node)
    if kind in ("bulletList", "orderedList"):
        lines = []
        for number, item in enumerate(children, start=1):
            mark = f"{number}. " if kind == "orderedList" else "- "
            text = _block(item).strip("\n").replace("\n", "\n  ")
            lines.append(mark + text)
        return "\n".join(lines)
    if kind == "rule":
        return "---"
    if children and all(_kind(c) in INLINE for c in children):
        return "".join(_inline(c) for c in children)
    if kind in INLINE:
        return _inline(node)
    separator = "\n" if kind in ("listItem", "tableRow") else "\n\n"
    return separator.join(text for c in children if (text := _block(c)))


def from_text(text: str | None) -> dict[str, Any]:
    """An ADF document of plain text: a paragraph per blank-line-separated block, newlines
    inside one as hard breaks."""
    content = []
    for paragraph in (text or "").replace("\r\n", "\n").split("\n\n"):
        if not paragraph.strip():
            continue
        inline: list[dict[str, Any]] = []
        for number, line in enumerate(paragraph.split("\n")):
            if number:
                inline.append({"type": "hardBreak"})
            if line:
                inline.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": inline})
    return {"type": "doc", "version": 1, "content": content}

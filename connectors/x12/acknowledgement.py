"""997 functional acknowledgements: the ones we send for every group we read, and the partner's
ones for the groups we sent.

What we read is summed up per group as plain JSON (`group_result`), kept in the read's state
until the checkpoint is committed; `build_997` turns that summary into the 997's body then. So
the 997 goes out only once the documents it accepts are safely stored, and says exactly what the
reader decided: AK2/AK5 per set (A, or R with AK3/AK4 naming the segment and element where
known), AK9 for the group (A all accepted, P some, R none or an envelope error; E is never
sent, since a set is either stored or a dead letter).
"""

from __future__ import annotations

from typing import Any

from connectors.x12.documents import SegmentError
from connectors.x12.envelope import Group, Interchange, Segment, TransactionSet


def _safe(text: str, limit: int) -> str:
    """A value the partner sent, made safe to echo in our 997 whatever our separators: letters,
    digits and ``-./ `` only (its own separators may be ours), cut to the element's size."""
    kept = "".join(c for c in text if c.isascii() and (c.isalnum() or c in "-./ "))
    return kept.strip()[:limit] or "0"


def set_result(
    transaction_set: TransactionSet, error: SegmentError | None, reason: str | None
) -> dict[str, Any]:
    """One set's verdict for the 997: accepted, or rejected with the codes and the reason."""
    result: dict[str, Any] = {
        "set": _safe(transaction_set.set_id, 3),
        "control": _safe(transaction_set.control, 9),
    }
    if error is None and reason is None:
        return result | {"status": "A"}
    result |= {"status": "R", "code": transaction_set.ak5_code or "5", "reason": reason}
    if error is not None:
        result["segment"] = {
            "id": error.segment,
            "position": error.segment_position,
            "code": error.segment_code,
        }
        if error.element:
            result["element"] = {
                "position": error.element,
                "code": error.element_code,
                "value": _safe(error.value, 99),
            }
    return result


def group_result(
    interchange: Interchange, group: Group, sets: list[dict[str, Any]]
) -> dict[str, Any]:
    """A group's verdict: its sets' results and the AK9 status and code."""
    accepted = sum(1 for s in sets if s["status"] == "A")
    if interchange.errors or group.errors:
        status = "R"
    elif accepted == len(sets):
        status = "A"
    else:
        status = "P" if accepted else "R"
    return {
        "functional_id": _safe(group.functional_id, 2),
        "control": _safe(group.control, 9),
        "declared": group.declared_sets if group.declared_sets is not None else len(group.sets),
        "received": len(group.sets),
        "accepted": accepted if status != "R" else 0,
        "status": status,
        "code": group.ak9_code,
        "reasons": interchange.errors + group.errors,
        "sets": sets,
        "partner": {
            "qualifier": interchange.sender_qualifier,
            "id": interchange.sender,
            "application": group.sender,
        },
    }


def build_997(result: dict[str, Any]) -> list[Segment]:
    """The body of a 997 answering one group read (`group_result`)."""
    body: list[Segment] = [["AK1", result["functional_id"], result["control"]]]
    rejected_group = result["status"] == "R"
    for answer in result["sets"]:
        body.append(["AK2", answer["set"], answer["control"]])
        if "segment" in answer:
            segment = answer["segment"]
            body.append(
                ["AK3", segment["id"], str(max(segment["position"], 1)), "", segment["code"]]
            )
            if "element" in answer:
                element = answer["element"]
                body.append(
                    ["AK4", str(element["position"]), "", element["code"], element["value"]]
                )
        if answer["status"] == "A" and not rejected_group:
            body.append(["AK5", "A"])
        else:
            body.append(["AK5", "R", answer.get("code") or "5"])
    ak9 = [
        "AK9",
        result["status"],
        str(result["declared"]),
        str(result["received"]),
        str(result["accepted"]),
    ]
    if result.get("code"):
        ak9.append(result["code"])
    body.append(ak9)
    return body


def read_997(segments: list[Segment]) -> dict[str, Any]:
    """A partner's 997 as plain JSON: the group it answers, its status, and each set's."""
    answer: dict[str, Any] = {"functional_id": "", "control": "", "status": "", "sets": []}
    current: dict[str, Any] | None = None
    for segment in segments:
        sid = segment[0]
        value = segment + [""] * 6
        if sid == "AK1":
            answer["functional_id"], answer["control"] = value[1], value[2]
        elif sid == "AK2":
            current = {"set": value[1], "control": value[2], "status": "", "errors": []}
            answer["sets"].append(current)
        elif sid in ("AK3", "AK4") and current is not None:
            current["errors"].append("*".join(segment))
        elif sid == "AK5" and current is not None:
            current["status"] = value[1]
            current["code"] = value[2]
        elif sid == "AK9":
            answer["status"] = value[1]
            answer["code"] = value[5]
    return answer

"""The X12 004010 envelope: ISA/IEA interchanges, GS/GE functional groups, ST/SE transaction
sets, read with the separators the ISA segment declares and written with configured ones.

Reading never trusts the file: its size and every segment's length are bounded, the ISA must be
exactly 106 characters with its separators where the standard puts them, and the walk over the
segments is a flat loop (no recursion), so a hostile file gets a reason, never a hang. Problems
that leave the structure readable (a count or control number that does not match, a missing
trailer) are collected on the interchange, group or set they concern, so the caller can still
answer each group with a 997 that says what was wrong; only a file that is not an interchange
at all raises `EnvelopeError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

#: A segment as read: its id, then its elements (index 1 is the first element, as X12 counts).
Segment = list[str]

#: Fixed ISA layout: (element, width) in order; the separators sit between them.
ISA_WIDTHS = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)
ISA_LENGTH = 106  # "ISA", 16 separators, 86 characters of elements, the terminator


class EnvelopeError(ValueError):
    """The bytes are not an X12 interchange this reader can walk; the message says why."""


@dataclass(frozen=True)
class Separators:
    """The three delimiters of an interchange (and the 00401 standards id in ISA11)."""

    element: str = "*"
    component: str = ">"
    segment: str = "~"

    def check(self) -> None:
        """Raise ValueError unless the separators are three distinct, non-alphanumeric,
        printable-or-control single characters that X12 allows."""
        chars = (self.element, self.component, self.segment)
        if any(len(c) != 1 for c in chars):
            raise ValueError("separators must be single characters")
        if len(set(chars)) != 3:
            raise ValueError(f"separators {chars!r} must differ from each other")
        for char in chars:
            if char.isalnum() or char == " ":
                raise ValueError(f"separator {char!r} cannot be a letter, digit or space")


@dataclass
class TransactionSet:
    """One ST..SE set: its segments (ST and SE included) and where it starts in the file."""

    set_id: str
    control: str
    segments: list[Segment]
    position: int  # 1-based segment number of its ST in the file
    errors: list[str] = field(default_factory=list)
    #: The 997's AK5 syntax error code for envelope problems (SE count, control numbers).
    ak5_code: str | None = None


@dataclass
class Group:
    """One GS..GE functional group."""

    functional_id: str
    sender: str
    receiver: str
    date: str
    time: str
    control: str
    version: str
    sets: list[TransactionSet] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The 997's AK9 error code for envelope problems (GE count, control numbers).
    ak9_code: str | None = None
    declared_sets: int | None = None

    def sent_at(self) -> datetime | None:
        """GS04/GS05 as a naive datetime, or None if they are not a valid date and time."""
        try:
            return datetime.strptime(self.date + self.time[:4], "%Y%m%d%H%M")
        except ValueError:
            return None


@dataclass
class Interchange:
    """One ISA..IEA interchange as read."""

    separators: Separators
    sender_qualifier: str
    sender: str
    receiver_qualifier: str
    receiver: str
    date: str
    time: str
    version: str
    control: str
    usage: str
    groups: list[Group] = field(default_factory=list)
    #: Problems of the interchange itself: every group in it is rejected with them.
    errors: list[str] = field(default_factory=list)


def parse_interchange(data: bytes, *, max_bytes: int, max_segment: int) -> Interchange:
    """Walk the interchange in `data`; raise EnvelopeError if it is not one."""
    if len(data) > max_bytes:
        raise EnvelopeError(f"file is {len(data):,} bytes, over the limit of {max_bytes:,}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # X12's extended character set predates UTF-8
    text = text.lstrip("\ufeff \t\r\n")
    if not text.startswith("ISA"):
        raise EnvelopeError(f"does not start with an ISA segment (starts {text[:8]!r})")
    if len(text) < ISA_LENGTH:
        raise EnvelopeError(
            f"the ISA segment is cut short: {len(text)} characters, it has {ISA_LENGTH}"
        )
    element = text[3]
    isa_elements = _fixed_isa(text, element)
    separators = Separators(element=element, component=text[104], segment=text[105])
    try:
        separators.check()
    except ValueError as error:
        raise EnvelopeError(f"ISA declares unusable separators: {error}") from None
    if separators.segment in "\r\n":
        body = text
    else:  # line breaks after each terminator are common and carry nothing
        body = text.replace("\r\n", "").replace("\n", "").replace("\r", "")
    interchange = Interchange(
        separators=separators,
        sender_qualifier=isa_elements[5],
        sender=isa_elements[6].strip(),
        receiver_qualifier=isa_elements[7],
        receiver=isa_elements[8].strip(),
        date=isa_elements[9],
        time=isa_elements[10],
        version=isa_elements[12],
        control=isa_elements[13],
        usage=isa_elements[15],
    )
    if interchange.version != "00401":
        interchange.errors.append(
            f"ISA12 version {interchange.version!r} is not 00401 (this hub speaks 004010)"
        )
    if not interchange.control.isdigit():
        interchange.errors.append(f"ISA13 control number {interchange.control!r} is not 9 digits")
    _walk(interchange, _segments(body, separators, max_segment))
    return interchange


def _fixed_isa(text: str, element: str) -> list[str]:
    """ISA's 16 elements, checking every separator sits at its fixed position."""
    if element.isalnum() or element in " \r\n":
        raise EnvelopeError(f"ISA's element separator {element!r} is a letter, digit or space")
    elements = ["ISA"]
    at = 3
    for number, width in enumerate(ISA_WIDTHS, start=1):
        if text[at] != element:
            raise EnvelopeError(
                f"ISA is not fixed width: character {at + 1} should be the element separator "
                f"{element!r} before ISA{number:02d}, found {text[at]!r}"
            )
        elements.append(text[at + 1 : at + 1 + width])
        at += 1 + width
    return elements


def _segments(body: str, separators: Separators, max_segment: int) -> list[Segment]:
    """The segments of the interchange, each split into elements; EnvelopeError for a segment
    longer than `max_segment` or holding control characters."""
    pieces = body.split(separators.segment)
    if pieces and not pieces[-1].strip():
        pieces.pop()
    segments: list[Segment] = []
    for number, piece in enumerate(pieces, start=1):
        if separators.segment not in "\r\n":
            piece = piece.strip("\r\n")
        elif separators.segment == "\r":
            piece = piece.lstrip("\n")  # CR as terminator, then LF
        if len(piece) > max_segment:
            raise EnvelopeError(
                f"segment {number} is {len(piece):,} characters long, over the limit of "
                f"{max_segment:,} (wrong segment terminator?)"
            )
        if any(ord(c) < 32 and c not in "\r\n\t" for c in piece):
            raise EnvelopeError(f"segment {number} holds control characters: binary data?")
        elements = piece.split(separators.element)
        if not elements[0] or not elements[0].isalnum() or len(elements[0]) > 3:
            raise EnvelopeError(f"segment {number} has no valid segment id: {piece[:20]!r}")
        segments.append(elements)
    return segments


def _walk(interchange: Interchange, segments: list[Segment]) -> None:
    """Sort the segments into groups and sets, noting every envelope error on its owner."""
    group: Group | None = None
    current: TransactionSet | None = None
    ended = False
    for number, segment in enumerate(segments[1:], start=2):
        sid = segment[0]
        if ended:
            interchange.errors.append(f"segment {number} ({sid}) follows the IEA")
            break
        if current is not None and sid != "SE" and sid not in ("ST", "GE", "GS", "IEA"):
            current.segments.append(segment)
            continue
        if sid == "GS":
            if group is not None:
                group.errors.append("GE missing before the next GS")
                group.ak9_code = "3"
            group = Group(
                functional_id=_at(segment, 1),
                sender=_at(segment, 2),
                receiver=_at(segment, 3),
                date=_at(segment, 4),
                time=_at(segment, 5),
                control=_at(segment, 6),
                version=_at(segment, 8),
            )
            interchange.groups.append(group)
            if group.version != "004010":
                group.errors.append(f"GS08 version {group.version!r} is not 004010")
                group.ak9_code = "2"
        elif sid == "ST":
            if group is None:
                interchange.errors.append(f"segment {number}: ST outside a functional group")
                continue
            if current is not None:
                current.errors.append("SE missing: the set ends where the next ST starts")
                current.ak5_code = "2"
            current = TransactionSet(_at(segment, 1), _at(segment, 2), [segment], number)
            group.sets.append(current)
        elif sid == "SE":
            if current is None:
                interchange.errors.append(f"segment {number}: SE without an ST")
                continue
            current.segments.append(segment)
            _check_set(current, segment)
            current = None
        elif sid == "GE":
            if group is None:
                interchange.errors.append(f"segment {number}: GE without a GS")
                continue
            if current is not None:
                current.errors.append("SE missing: the set ends at the GE")
                current.ak5_code = "2"
                current = None
            _check_group(group, segment)
            group = None
        elif sid == "IEA":
            if group is not None:
                group.errors.append("GE missing: the group ends at the IEA")
                group.ak9_code = "3"
                if current is not None:
                    current.errors.append("SE missing: the set ends at the IEA")
                    current.ak5_code = "2"
                    current = None
                group = None
            _check_interchange(interchange, segment)
            ended = True
        else:
            interchange.errors.append(f"segment {number} ({sid}) is outside any transaction set")
    if not ended:
        interchange.errors.append("IEA missing: the interchange is truncated")
        if current is not None:
            current.errors.append("SE missing: the file ends inside the set")
            current.ak5_code = "2"
        if group is not None:
            group.errors.append("GE missing: the file ends inside the group")
            group.ak9_code = "3"


def _check_set(current: TransactionSet, se: Segment) -> None:
    count = _at(se, 1)
    if not count.isdigit() or int(count) != len(current.segments):
        current.errors.append(
            f"SE01 says {count or 'nothing'} segments, the set has {len(current.segments)}"
        )
        current.ak5_code = "4"
    if _at(se, 2) != current.control:
        current.errors.append(
            f"SE02 control number {_at(se, 2)!r} is not ST02's {current.control!r}"
        )
        current.ak5_code = "3"


def _check_group(group: Group, ge: Segment) -> None:
    count = _at(ge, 1)
    group.declared_sets = int(count) if count.isdigit() else None
    if group.declared_sets != len(group.sets):
        group.errors.append(f"GE01 says {count or 'nothing'} sets, the group has {len(group.sets)}")
        group.ak9_code = "5"
    if _at(ge, 2) != group.control:
        group.errors.append(f"GE02 control number {_at(ge, 2)!r} is not GS06's {group.control!r}")
        group.ak9_code = "4"


def _check_interchange(interchange: Interchange, iea: Segment) -> None:
    count = _at(iea, 1)
    if not count.isdigit() or int(count) != len(interchange.groups):
        interchange.errors.append(
            f"IEA01 says {count or 'nothing'} groups, the interchange has {len(interchange.groups)}"
        )
    if _at(iea, 2) != interchange.control:
        interchange.errors.append(
            f"IEA02 control number {_at(iea, 2)!r} is not ISA13's {interchange.control!r}"
        )


def _at(segment: Segment, index: int) -> str:
    """Element `index` of `segment`, or "" if the segment is shorter."""
    return segment[index] if index < len(segment) else ""


# --- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """Our side or the partner's: ISA qualifier and id, GS application code."""

    qualifier: str
    interchange_id: str
    application_code: str


def segment_text(segment: Segment, separators: Separators) -> str:
    """One segment as text, trailing empty elements dropped as X12 requires."""
    elements = list(segment)
    while len(elements) > 1 and elements[-1] == "":
        elements.pop()
    for value in elements[1:]:
        for char in (separators.element, separators.component, separators.segment):
            if char in value:
                raise ValueError(f"{segment[0]} value {value!r} holds the separator {char!r}")
    return separators.element.join(elements) + separators.segment


def build_interchange(
    *,
    sender: Party,
    receiver: Party,
    functional_id: str,
    sets: list[list[Segment]],
    interchange_control: int,
    group_control: int,
    set_controls: list[int],
    stamp: datetime,
    separators: Separators,
    usage: str,
    line_breaks: bool,
    acknowledgement_requested: bool = False,
) -> str:
    """One interchange holding one functional group of `sets` (each without ST/SE: they are
    added here with their control numbers and segment counts); ValueError if a value cannot
    be written (it holds a separator)."""
    end = "\r\n" if line_breaks else ""
    isa = [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        sender.qualifier,
        sender.interchange_id.ljust(15),
        receiver.qualifier,
        receiver.interchange_id.ljust(15),
        stamp.strftime("%y%m%d"),
        stamp.strftime("%H%M"),
        "U",  # ISA11 in 00401 is the standards identifier; repetition separators came in 00402
        "00401",
        f"{interchange_control:09d}",
        "1" if acknowledgement_requested else "0",
        usage,
        separators.component,
    ]
    lines = [separators.element.join(isa) + separators.segment]
    lines.append(
        segment_text(
            [
                "GS",
                functional_id,
                sender.application_code,
                receiver.application_code,
                stamp.strftime("%Y%m%d"),
                stamp.strftime("%H%M"),
                str(group_control),
                "X",
                "004010",
            ],
            separators,
        )
    )
    for body, control in zip(sets, set_controls, strict=True):
        st_control = f"{control:04d}"
        whole = [["ST", SET_OF_GROUP[functional_id], st_control], *body]
        whole.append(["SE", str(len(whole) + 1), st_control])
        lines.extend(segment_text(segment, separators) for segment in whole)
    lines.append(segment_text(["GE", str(len(sets)), str(group_control)], separators))
    lines.append(segment_text(["IEA", "1", f"{interchange_control:09d}"], separators))
    return end.join(lines) + end


#: Functional group id (GS01) → the transaction set it carries here, and back.
SET_OF_GROUP = {"PO": "850", "PR": "855", "SH": "856", "IN": "810", "FA": "997"}
GROUP_OF_SET = {value: key for key, value in SET_OF_GROUP.items()}

"""The X12 connection's options: the partner, the envelope, the folders, the limits."""

from __future__ import annotations

from typing import Literal

from hub import sdk


class X12Options(sdk.Options, kw_only=True):
    """One trading partner (a supplier, or a buyer when the hub plays the supplier)."""

    #: Our ISA05/ISA06 and GS02; the partner's ISA07/ISA08 and GS03.
    sender_qualifier: str = "ZZ"
    sender_id: str
    sender_application: str | None = None
    receiver_qualifier: str = "ZZ"
    receiver_id: str
    receiver_application: str | None = None
    #: The partner's `vendor_id` in the vendor file (records read carry it); default receiver_id.
    vendor_id: str | None = None
    #: ISA15: P production, T test.
    usage: Literal["P", "T"] = "P"
    element_separator: str = "*"
    component_separator: str = ">"
    segment_terminator: str = "~"
    #: Write CR LF after each segment terminator (easier to read; every reader skips them).
    line_breaks: bool = False
    #: CUR02 of the 850s written.
    currency: str = "USD"
    #: N1*BT name of the 850s written (who pays); none leaves the loop out.
    bill_to: str | None = None
    #: The zone of GS dates and times, for records' updated_at and the envelopes we write.
    timezone: str = "UTC"

    transport: Literal["local", "sftp"] = "local"
    #: Where the partner's interchanges arrive, and where ours (and our 997s) go.
    inbound_folder: str
    outbound_folder: str
    archive_folder: str | None = None
    host: str | None = None
    port: int = 22
    username: str | None = None
    known_hosts: str | None = None
    connect_timeout: float = 30.0
    #: Inbound names read (shell pattern); hidden, ``*.part`` and ``*.tmp`` names never are.
    inbound_pattern: str = "*"
    settle_seconds: float = 0.0
    #: The stream that reads files holding only 997s, or that are no interchange at all (they
    #: become its dead letters).
    fallback_stream: str = "acknowledgements"
    #: The connection's state file (control numbers, 997s); relative to the configuration
    #: folder; default ``.cohub-x12/CONNECTION.json`` there.
    state_file: str | None = None
    remember_days: int = 90
    max_file_bytes: int = 16 * 1024 * 1024
    max_segment_length: int = 4096

"""ANSI X12 004010 with one trading partner: 850 purchase orders out, 855 acknowledgements,
856 ship notices and 810 invoices in (and the other way round when the hub plays the supplier),
997 functional acknowledgements both ways, over a local folder or SFTP.

The package, by module: `options` (every option), `envelope` (ISA/GS/ST, separators, counts),
`documents` (the four sets to and from records), `acknowledgement` (997s), `control` (control
numbers and the connection's state file). Files move through the flat-file connector's
transports (`connectors.flat_file.transports`, `connectors.flat_file.sftp`): listing, snapshots
with checksums, atomic publishing, archiving. docs/connectors/x12.md is the admin's page.

Reading: each inbound file is one interchange, read once (by checksum) by the stream of its
first functional group (`fallback_stream` for a file holding only 997s, or no interchange at
all). Every set becomes one raw dict (the set's segments, plain JSON) mapped by `map_raw`; a bad
set is a dead letter with the segment and reason. Once the checkpoint is committed,
`acknowledge` sends a 997 for every group read and archives the file.

Writing: each batch is one interchange (one group, a set per record) published atomically in the
outbound folder under a name holding its ISA13.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import structlog

from connectors.flat_file.options import ALWAYS_IGNORED
from connectors.flat_file.transports import Entry, FileChanged, Folder, LocalFolder
from connectors.x12.acknowledgement import build_997, group_result, read_997, set_result
from connectors.x12.control import ControlFile, next_number, today
from connectors.x12.documents import (
    STREAMS,
    SegmentError,
    build_810,
    build_850,
    build_855,
    build_856,
    check_lengths,
)
from connectors.x12.envelope import (
    GROUP_OF_SET,
    SET_OF_GROUP,
    EnvelopeError,
    Group,
    Interchange,
    Party,
    Segment,
    Separators,
    TransactionSet,
    build_interchange,
    parse_interchange,
)
from connectors.x12.options import X12Options
from hub import sdk

__all__ = ["X12Connector", "X12Options", "cohub_register_connectors"]

log = structlog.get_logger(__name__)

#: Transaction set → the stream that reads it.
STREAM_OF_SET = {set_id: stream for stream, (set_id, _, _) in STREAMS.items()}


class X12Connector(sdk.Connector[X12Options]):
    """ANSI X12 004010 interchanges with one trading partner, in folders local or over SFTP."""

    name = "x12"
    title = "ANSI X12 004010 (850, 855, 856, 810, 997) with a trading partner"
    options = X12Options
    secrets = ("password", "private_key", "private_key_passphrase")

    def __init__(self, options: X12Options, secrets: Any, context: sdk.ConnectionContext):
        super().__init__(options, secrets, context)
        self._folders: dict[str, Folder] = {}

    # --- the partner and the envelope ------------------------------------------------------

    def _parties(self) -> tuple[Party, Party]:
        """(us, the partner) from the options; ConnectorConfigError naming a bad id."""
        options = self.config
        ours = Party(
            options.sender_qualifier,
            options.sender_id,
            options.sender_application or options.sender_id,
        )
        theirs = Party(
            options.receiver_qualifier,
            options.receiver_id,
            options.receiver_application or options.receiver_id,
        )
        separators = self._separators()
        for side, party in (("sender", ours), ("receiver", theirs)):
            if len(party.qualifier) != 2 or not party.qualifier.isalnum():
                raise sdk.ConnectorConfigError(
                    f"{side}_qualifier {party.qualifier!r} must be 2 letters or digits "
                    "(ISA05/ISA07, e.g. ZZ, 01, 08, 12)"
                )
            if not 1 <= len(party.interchange_id) <= 15 or party.interchange_id != (
                party.interchange_id.strip()
            ):
                raise sdk.ConnectorConfigError(
                    f"{side}_id {party.interchange_id!r} must be 1 to 15 characters without "
                    "leading or trailing spaces (ISA06/ISA08)"
                )
            if not 2 <= len(party.application_code) <= 15:
                raise sdk.ConnectorConfigError(
                    f"{side}_application {party.application_code!r} must be 2 to 15 "
                    "characters (GS02/GS03)"
                )
            for value in (party.interchange_id, party.application_code):
                used = {separators.element, separators.component, separators.segment}
                if used & set(value):
                    raise sdk.ConnectorConfigError(
                        f"{side} id {value!r} holds a separator ({''.join(sorted(used))})"
                    )
        return ours, theirs

    def _separators(self) -> Separators:
        options = self.config
        separators = Separators(
            options.element_separator, options.component_separator, options.segment_terminator
        )
        try:
            separators.check()
        except ValueError as error:
            raise sdk.ConnectorConfigError(f"separators: {error}") from None
        return separators

    def _zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.config.timezone)
        except (KeyError, ValueError):
            raise sdk.ConnectorConfigError(
                f"timezone {self.config.timezone!r} is not an IANA zone"
            ) from None

    # --- folders and state -----------------------------------------------------------------

    def _folder(self, which: str) -> Folder:
        """The inbound or outbound folder, on the connection's transport (opened once)."""
        if which not in self._folders:
            options = self.config
            path = options.inbound_folder if which == "inbound" else options.outbound_folder
            if options.transport == "local":
                local = self.context.resolve_path(path)
                if which == "outbound":
                    # Our own drop folder: made when missing, as the partner's inbound never is.
                    local.mkdir(parents=True, exist_ok=True)
                self._folders[which] = LocalFolder(local)
            else:
                if not options.host or not options.username:
                    raise sdk.ConnectorConfigError("transport sftp needs host and username")
                from connectors.flat_file.sftp import SftpFolder  # asyncssh only when used

                known_hosts = options.known_hosts
                if known_hosts and not known_hosts.startswith("SHA256:"):
                    known_hosts = str(self.context.resolve_path(known_hosts))
                self._folders[which] = SftpFolder(
                    host=options.host,
                    port=options.port,
                    username=options.username,
                    folder=path,
                    known_hosts=known_hosts,
                    secrets=self.secret_values,
                    timeout=options.connect_timeout,
                )
        return self._folders[which]

    def _archive_folder(self) -> str | None:
        archive = self.config.archive_folder
        if archive and self.config.transport == "local":
            return str(self.context.resolve_path(archive))
        return archive

    def _control(self) -> ControlFile:
        path = self.config.state_file or f".cohub-x12/{self.context.connection}.json"
        return ControlFile(self.context.resolve_path(path), self.config.remember_days)

    async def check(self) -> None:
        """The partner ids, separators and zone are sound; the folders can be listed (and,
        locally, written); the state file's folder can be written."""
        self._parties()
        self._zone()
        if self.config.fallback_stream not in STREAMS:
            raise sdk.ConnectorConfigError(
                f"fallback_stream {self.config.fallback_stream!r} is not a stream "
                f"({', '.join(STREAMS)})"
            )
        for which in ("inbound", "outbound"):
            folder = self._folder(which)
            try:
                await folder.check()
            except sdk.ConnectorConfigError as error:
                raise sdk.ConnectorConfigError(f"{which} {error}") from None
            if isinstance(folder, LocalFolder) and not os.access(folder.path, os.W_OK):
                raise sdk.ConnectorConfigError(
                    f"{which} folder {folder.path} cannot be written (permission denied)"
                )
        archive = self._archive_folder()
        if archive is not None:
            await self._folder("inbound").check_archive(archive)
        state = self._control().path.parent
        existing = next((p for p in (state, *state.parents) if p.exists()), state)
        if not os.access(existing, os.W_OK):
            raise sdk.ConnectorConfigError(
                f"state file folder {state} cannot be written (permission denied)"
            )

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=stream,
                record=record.record_name,
                description=f"X12 {set_id} sets: read from the inbound folder, written to the "
                "outbound folder",
                writable=True,
            )
            for stream, (set_id, record, _) in STREAMS.items()
        ]

    # --- reading ---------------------------------------------------------------------------

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        self._stream(stream)
        self._parties()
        folder = self._folder("inbound")
        files: dict[str, dict[str, Any]] = dict((state or {}).get("files", {}))
        listing = await folder.entries()
        present = {entry.name for entry in listing}
        changed = False
        for name in [n for n in files if n not in present]:
            del files[name]  # archived or removed: the control file remembers its checksum
            changed = True
        acknowledged = self._control().read()["acknowledged"]
        for entry in self._ready(listing):
            known = files.get(entry.name)
            if known and (known["size"], known["mtime_ns"]) == (entry.size, entry.mtime_ns):
                continue
            stamp = {"size": entry.size, "mtime_ns": entry.mtime_ns}
            if entry.size > self.config.max_file_bytes:
                batch = self._too_big(stream, entry, files, stamp)
                if batch is not None:
                    yield batch
                continue
            try:
                async with folder.snapshot(entry) as snapshot:
                    data = snapshot.path.read_bytes()
                    checksum = snapshot.sha256
            except FileChanged:
                log.warning("x12.file_changed_while_read", file=entry.name, stream=stream)
                continue
            if checksum in acknowledged or any(
                f.get("sha256") == checksum for n, f in files.items() if n != entry.name
            ):
                log.info("x12.already_read", file=entry.name, sha256=checksum)
                files[entry.name] = {"sha256": checksum, "groups": [], "duplicate": True} | stamp
                changed = True
                continue
            claimed, records, rejects, groups = self._read_file(stream, entry.name, data)
            if not claimed:
                files[entry.name] = {"sha256": checksum, "other": True} | stamp
                changed = True
                continue
            files[entry.name] = {"sha256": checksum, "groups": groups} | stamp
            changed = False
            yield sdk.Batch(records=records, rejects=rejects, state={"files": dict(files)})
        if changed:
            yield sdk.Batch(records=[], state={"files": dict(files)})

    def _ready(self, listing: list[Entry]) -> list[Entry]:
        """Inbound files to look at, by name: matching the pattern, not ignored, settled."""
        now = time.time()
        settle = self.config.settle_seconds
        return [
            entry
            for entry in sorted(listing)
            if fnmatchcase(entry.name, self.config.inbound_pattern)
            and not any(fnmatchcase(entry.name, p) for p in ALWAYS_IGNORED)
            and not (settle and now - entry.mtime_ns / 1e9 < settle)
        ]

    def _too_big(
        self, stream: str, entry: Entry, files: dict[str, dict[str, Any]], stamp: dict[str, int]
    ) -> sdk.Batch | None:
        """A file over `max_file_bytes`, never opened: the fallback stream's dead letter."""
        if stream != self.config.fallback_stream:
            return None
        reason = (
            f"file is {entry.size:,} bytes, over max_file_bytes {self.config.max_file_bytes:,}: "
            "not read (it stays in the inbound folder)"
        )
        log.warning("x12.file_too_big", file=entry.name, size=entry.size)
        files[entry.name] = {"sha256": "", "groups": [], "too_big": True} | stamp
        reject = sdk.Reject(position=entry.name, reason=reason, raw={"file": entry.name})
        return sdk.Batch(records=[], rejects=[reject], state={"files": dict(files)})

    def _read_file(
        self, stream: str, name: str, data: bytes
    ) -> tuple[bool, list[sdk.Record], list[sdk.Reject], list[dict[str, Any]]]:
        """(whether `stream` reads this file, its records, its rejects, the 997 summaries of
        its groups)."""
        try:
            interchange = parse_interchange(
                data,
                max_bytes=self.config.max_file_bytes,
                max_segment=self.config.max_segment_length,
            )
        except EnvelopeError as error:
            if stream != self.config.fallback_stream:
                return False, [], [], []
            log.warning("x12.not_an_interchange", file=name, reason=str(error))
            text = data.decode("latin-1")
            reject = sdk.Reject(
                position=name,
                reason=f"not an X12 interchange: {error}",
                raw={"file": name, "text": text},
            )
            return True, [], [reject], []
        owners = [
            STREAM_OF_SET.get(SET_OF_GROUP.get(g.functional_id, ""), self.config.fallback_stream)
            for g in interchange.groups
            if g.functional_id != "FA"
        ]
        if (owners[0] if owners else self.config.fallback_stream) != stream:
            return False, [], [], []
        self._check_partner(interchange)
        records: list[sdk.Record] = []
        rejects: list[sdk.Reject] = []
        groups: list[dict[str, Any]] = []
        for group in interchange.groups:
            if group.functional_id == "FA" and (interchange.errors or group.errors):
                reason = "997 not read: " + "; ".join(interchange.errors + group.errors)
                raw = {
                    "transaction_set": "997",
                    "file": name,
                    "group_control_number": group.control,
                }
                rejects.append(
                    sdk.Reject(position=f"{name}:997/{group.control}", reason=reason, raw=raw)
                )
                continue
            if group.functional_id == "FA":
                rejects += self._partner_997(name, interchange, group)
                continue
            results = []
            for transaction_set in group.sets:
                record, reject, result = self._read_set(
                    stream, name, interchange, group, transaction_set
                )
                if record is not None:
                    records.append(record)
                if reject is not None:
                    rejects.append(reject)
                results.append(result)
            groups.append(group_result(interchange, group, results))
            log.info(
                "x12.group_read",
                file=name,
                group=group.control,
                functional_id=group.functional_id,
                sets=len(group.sets),
                status=groups[-1]["status"],
            )
        if interchange.errors and not interchange.groups:
            rejects.append(
                sdk.Reject(
                    position=name,
                    reason="interchange rejected: " + "; ".join(interchange.errors),
                    raw={"file": name, "text": data.decode("latin-1")},
                )
            )
        return True, records, rejects, groups

    def _check_partner(self, interchange: Interchange) -> None:
        """An interchange from someone else than the partner, or to someone else than us, is
        rejected whole: its documents are not the partner's to send."""
        ours, theirs = self._parties()
        if (interchange.sender_qualifier, interchange.sender) != (
            theirs.qualifier,
            theirs.interchange_id,
        ):
            interchange.errors.append(
                f"ISA05/ISA06 sender {interchange.sender_qualifier}/{interchange.sender} is not "
                f"the partner {theirs.qualifier}/{theirs.interchange_id}"
            )
        if (interchange.receiver_qualifier, interchange.receiver) != (
            ours.qualifier,
            ours.interchange_id,
        ):
            interchange.errors.append(
                f"ISA07/ISA08 receiver {interchange.receiver_qualifier}/{interchange.receiver} "
                f"is not us ({ours.qualifier}/{ours.interchange_id})"
            )

    def _read_set(
        self,
        stream: str,
        name: str,
        interchange: Interchange,
        group: Group,
        transaction_set: TransactionSet,
    ) -> tuple[sdk.Record | None, sdk.Reject | None, dict[str, Any]]:
        """One set: its record, or its reject; and its verdict for the 997."""
        sent_at = group.sent_at() or datetime.now()
        raw = {
            "transaction_set": transaction_set.set_id,
            "control_number": transaction_set.control,
            "group_control_number": group.control,
            "interchange_control_number": interchange.control,
            "sender": interchange.sender,
            "sent_at": sent_at.isoformat(),
            "file": name,
            "segments": transaction_set.segments,
        }
        position = f"{name}:{group.control}/{transaction_set.control}"
        expected = SET_OF_GROUP.get(group.functional_id)
        problems = interchange.errors + group.errors + transaction_set.errors
        if expected != transaction_set.set_id:
            transaction_set.ak5_code = "1"
            problems.append(
                f"transaction set {transaction_set.set_id!r} in a {group.functional_id!r} "
                "group is not read here"
            )
        elif STREAM_OF_SET[expected] != stream:
            problems.append(
                f"group {group.functional_id} ({expected}) in a file read by stream {stream!r}: "
                "send each kind of document in its own interchange"
            )
        if problems:
            reason = "; ".join(problems)
            reject = sdk.Reject(position=position, reason=reason, raw=raw)
            return None, reject, set_result(transaction_set, None, reason)
        try:
            record = self.map_raw(stream, raw)
        except SegmentError as error:
            reject = sdk.Reject(position=position, reason=error.reason, raw=raw)
            return None, reject, set_result(transaction_set, error, error.reason)
        except sdk.BadRecord as error:
            reject = sdk.Reject(position=position, reason=error.reason, raw=raw)
            return None, reject, set_result(transaction_set, None, error.reason)
        return record, None, set_result(transaction_set, None, None)

    def _partner_997(self, name: str, interchange: Interchange, group: Group) -> list[sdk.Reject]:
        """Record the partner's 997s for our groups; each set (or group) they rejected is a
        reject of this read, so the run reports it and a dead letter keeps it."""
        rejects: list[sdk.Reject] = []
        control = self._control()
        for transaction_set in group.sets:
            answer = read_997(transaction_set.segments)
            with control.changing() as state:
                sent = state["sent"].get(answer["control"], {})
                state["received_997"][answer["control"]] = {
                    "on": today(),
                    "status": answer["status"],
                    "file": name,
                    "rejected": [s["control"] for s in answer["sets"] if s["status"] != "A"],
                }
            keys = sent.get("sets", {})
            rejected = [s for s in answer["sets"] if s["status"] not in ("A", "E")]
            if answer["status"] == "R" and not rejected:
                rejected = [{"set": "", "control": c, "code": "", "errors": []} for c in keys]
                rejected = rejected or [{"set": "", "control": "", "code": "", "errors": []}]
            log_event = log.warning if rejected else log.info
            log_event(
                "x12.997_received",
                file=name,
                group=answer["control"],
                status=answer["status"],
                rejected=[keys.get(s["control"], s["control"]) for s in rejected],
            )
            for item in rejected:
                what = keys.get(item["control"])
                reason = (
                    f"partner {interchange.sender} rejected our {answer['functional_id']} group "
                    f"{answer['control']}"
                    + (f", set {item['control']}" if item["control"] else "")
                    + (f" ({what})" if what else "")
                    + f": AK9 {answer['status']}"
                    + (f", AK5 {item.get('status', 'R')} {item['code']}" if item["code"] else "")
                    + ("; " + "; ".join(item["errors"]) if item["errors"] else "")
                )
                raw = {
                    "transaction_set": "997",
                    "file": name,
                    "group_control_number": answer["control"],
                    "control_number": item["control"],
                    "record_key": what,
                    "segments": transaction_set.segments,
                }
                position = f"{name}:997/{answer['control']}/{item['control']}"
                rejects.append(sdk.Reject(position=position, reason=reason, raw=raw))
        return rejects

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        set_id, record_type, parse = self._stream(stream)
        if raw.get("transaction_set") == "997":
            raise sdk.BadRecord(
                "a partner's 997 rejected this document: correct it at the source and send "
                "it again (a 997 cannot be replayed)"
            )
        if raw.get("transaction_set") != set_id:
            raise sdk.BadRecord(
                f"stream {stream!r} reads {set_id} sets, not {raw.get('transaction_set')!r}"
            )
        try:
            segments = msgspec.convert(raw.get("segments"), list[list[str]])
            sent_at = datetime.fromisoformat(str(raw.get("sent_at")))
        except (msgspec.ValidationError, ValueError) as error:
            raise sdk.BadRecord(f"not a raw X12 set: {error}") from None
        fields = parse(segments)
        fields["vendor_id"] = self.config.vendor_id or self.config.receiver_id
        fields["updated_at"] = sent_at.replace(tzinfo=sent_at.tzinfo or self._zone())
        if set_id == "855" and not fields.get("acknowledgement_id"):
            fields["acknowledgement_id"] = (
                f"{fields['po_id']}-{raw.get('interchange_control_number')}-"
                f"{raw.get('control_number')}"
            )
        try:
            return msgspec.convert(fields, record_type, strict=False)
        except msgspec.ValidationError as error:
            raise sdk.BadRecord(f"{record_type.record_name}: {error}") from None

    def _stream(self, stream: str) -> tuple[str, type[sdk.Record], Any]:
        try:
            return STREAMS[stream]
        except KeyError:
            raise sdk.ConnectorConfigError(
                f"no stream {stream!r}; x12 has {', '.join(STREAMS)}"
            ) from None

    async def acknowledge(self, stream: str, state: sdk.State) -> None:
        """For every file the committed `state` read: send a 997 per group (once, by the file's
        checksum), then archive the file if `archive_folder` is set."""
        control = self._control()
        folder = self._folder("inbound")
        archive = self._archive_folder()
        for name, entry in state.get("files", {}).items():
            if entry.get("other") or entry.get("too_big"):
                continue
            checksum = entry["sha256"]
            # A copy of a file already read is archived, never answered: its original's entry
            # sends the 997 (and marks the checksum) whatever order the entries come in.
            if not entry.get("duplicate") and checksum not in control.read()["acknowledged"]:
                sent = []
                for result in entry.get("groups", []):
                    file_name = await self._publish(
                        f"997:{checksum}:{result['control']}", "FA", [build_997(result)]
                    )
                    sent.append(file_name)
                    log.info(
                        "x12.997_sent",
                        file=name,
                        group=result["control"],
                        status=result["status"],
                        to=file_name,
                    )
                with control.changing() as saved:
                    saved["acknowledged"][checksum] = {"on": today(), "file": name, "997": sent}
            if archive is None:
                continue
            now = await folder.stat(name)
            if now is None or (now.size, now.mtime_ns) != (entry["size"], entry["mtime_ns"]):
                continue
            moved = await folder.archive(name, archive)
            log.info("x12.archived", stream=stream, file=name, archived_as=moved)

    # --- writing ---------------------------------------------------------------------------

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        set_id, record_type, _ = self._stream(stream)
        bodies: list[list[Segment]] = []
        keys: list[str] = []
        rejects: list[sdk.Reject] = []
        separators = self._separators()
        for record in batch.records:
            if not isinstance(record, record_type):
                raise sdk.ConnectorConfigError(
                    f"stream {stream!r} writes {record_type.record_name}, not {record.record_name}"
                )
            try:
                body = self._build(set_id, record)
                check_lengths(body, separators)
            except ValueError as error:
                rejects.append(
                    sdk.Reject(
                        position=f"{stream}:{record.key}",
                        reason=str(error),
                        raw=msgspec.to_builtins(record),
                    )
                )
                continue
            bodies.append(body)
            keys.append(record.key)
        if bodies:
            digest = hashlib.sha256(
                msgspec.json.encode([stream, bodies, batch.generation])
            ).hexdigest()
            await self._publish(f"{stream}:{digest}", GROUP_OF_SET[set_id], bodies, keys)
        return sdk.WriteResult(written=len(bodies), rejects=rejects)

    def _build(self, set_id: str, record: sdk.Record) -> list[Segment]:
        if set_id == "850":
            return build_850(record, currency=self.config.currency, bill_to=self.config.bill_to)  # type: ignore[arg-type]
        builders = {"855": build_855, "856": build_856, "810": build_810}
        return builders[set_id](record)  # type: ignore[operator]

    async def _publish(
        self,
        key: str,
        functional_id: str,
        bodies: list[list[Segment]],
        record_keys: list[str] | None = None,
    ) -> str:
        """Publish one interchange of `bodies` under control numbers allocated (and saved)
        first; the same `key` again reuses its numbers and time, so it writes the same bytes
        under the same name. Returns the file name."""
        ours, theirs = self._parties()
        control = self._control()
        with control.changing() as state:
            numbers = state["batches"].get(key)
            if numbers is None:
                numbers = {
                    "on": today(),
                    "interchange": next_number(state, "interchange"),
                    "group": next_number(state, "group"),
                    "sets": [next_number(state, "set") for _ in bodies],
                    "stamp": datetime.now(self._zone()).strftime("%Y%m%d%H%M"),
                }
                state["batches"][key] = numbers
                if record_keys is not None:
                    state["sent"][str(numbers["group"])] = {
                        "on": today(),
                        "interchange": numbers["interchange"],
                        "sets": {
                            f"{n:04d}": k for n, k in zip(numbers["sets"], record_keys, strict=True)
                        },
                    }
        text = build_interchange(
            sender=ours,
            receiver=theirs,
            functional_id=functional_id,
            sets=bodies,
            interchange_control=numbers["interchange"],
            group_control=numbers["group"],
            set_controls=numbers["sets"],
            stamp=datetime.strptime(numbers["stamp"], "%Y%m%d%H%M"),
            separators=self._separators(),
            usage=self.config.usage,
            line_breaks=self.config.line_breaks,
        )
        name = f"{SET_OF_GROUP[functional_id]}_{theirs.interchange_id}_{numbers['interchange']:09d}.x12"
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        await self._folder("outbound").publish(name, text.encode("utf-8"))
        return name

    async def close(self) -> None:
        for folder in self._folders.values():
            await folder.close()
        self._folders = {}

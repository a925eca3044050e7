"""Ed-Fi ODS/API (API v7, Data Standard 5): staff, assignments and local finance, by change version.

Read top to bottom as the Ed-Fi documentation goes:

- **discovery**: ``GET {base_url}`` answers the API's version, its data models and its URLs; a
  server that does not answer so is not an Ed-Fi API.
- **auth**: OAuth 2.0 client credentials at ``{base_url}/oauth/token`` (key and secret from the
  API's admin tool).
- **resources**: ``{base_url}/data/v3/ed-fi/{resource}``, paged with ``offset`` and ``limit``;
  ``totalCount=true`` makes the first page carry the total in the ``Total-Count`` header.
- **change queries**: ``GET {base_url}/changeQueries/v1/availableChangeVersions`` gives
  ``oldestChangeVersion`` and ``newestChangeVersion``; each resource then takes
  ``minChangeVersion`` and ``maxChangeVersion``, and ``{resource}/deletes`` lists what was deleted
  in that window with its natural key (``keyValues``).
- **writes**: ``POST {resource}`` with the whole resource is an upsert by the resource's natural
  key (201 created, 200 updated). ``DELETE {resource}/{id}`` deletes by the resource's ``id``,
  which ``GET {resource}`` with the natural key's fields as query parameters finds.

A read asks which change versions exist, reads the changes after the version the last run
finished at up to the newest, then the deletes of that window (``Batch.deletes``). Its state is
``{"change_version": N}`` once complete; a read cut short resumes with
``{"change_version": N, "target": M, "offset": K, "phase": "upserts"|"deletes"}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from connectors.client_credentials import ClientCredentialsApi
from hub import sdk
from hub.sdk.http import (
    ApiOptions,
    HttpStatusError,
    Retryable,
)


class EdFiOptions(ApiOptions, kw_only=True):
    """Where the Ed-Fi ODS/API is and how to read it. `base_url` is the API root (the URL whose
    ``GET`` answers the version and data models, e.g. ``https://edfi.example.org/api``)."""

    base_url: Annotated[str, msgspec.Meta(description="Ed-Fi ODS/API root URL")]
    client_id: Annotated[str, msgspec.Meta(description="API client key from the admin tool")]
    token_path: str = "oauth/token"
    data_path: str = "data/v3/ed-fi"
    change_queries_path: str = "changeQueries/v1"
    page_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 500
    account_layout: Annotated[
        str, msgspec.Meta(description="layout of localAccount identifiers (sdk.ACCOUNT_LAYOUTS)")
    ] = "nces"


@dataclass(frozen=True)
class Writing:
    """How a stream is written: canonical record → Ed-Fi resource body to POST, and canonical
    record key → the natural key's query parameters, to find a resource's id for ``DELETE``."""

    body: Callable[[Any], dict[str, Any]]
    key_query: Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class Resource:
    """One Ed-Fi resource as a stream: its path, canonical record and mapping."""

    path: str
    record: str
    description: str
    map: Callable[[dict[str, Any], EdFiOptions], dict[str, Any]]
    #: Natural-key values of a ``/deletes`` entry → the canonical record key.
    deleted_key: Callable[[Mapping[str, Any]], str]
    #: For the streams a connection can write.
    writing: Writing | None = None


# --- mapping ---------------------------------------------------------------------------------


def _descriptor(uri: str | None) -> str | None:
    """``uri://ed-fi.org/StaffClassificationDescriptor#Teacher`` → ``Teacher``."""
    if uri is None:
        return None
    return uri.rsplit("#", 1)[-1]


def _ref(raw: Mapping[str, Any], reference: str, field: str) -> Any:
    value = raw.get(reference)
    return value.get(field) if isinstance(value, dict) else None


def _work_email(raw: Mapping[str, Any]) -> str | None:
    for mail in raw.get("electronicMails") or ():
        if isinstance(mail, dict) and _descriptor(mail.get("electronicMailTypeDescriptor")) in (
            "Work",
            "Organization",
        ):
            return mail.get("electronicMailAddress")
    return None


def _state_id(raw: Mapping[str, Any]) -> str | None:
    for code in raw.get("identificationCodes") or ():
        if (
            isinstance(code, dict)
            and _descriptor(code.get("staffIdentificationSystemDescriptor")) == "State"
        ):
            return code.get("identificationCode")
    return None


def map_staff(raw: dict[str, Any], options: EdFiOptions) -> dict[str, Any]:
    """An Ed-Fi ``staff`` as `hr.employee` fields."""
    return {
        "employee_id": raw.get("staffUniqueId"),
        "state_staff_id": _state_id(raw),
        "first_name": raw.get("firstName"),
        "middle_name": raw.get("middleName"),
        "last_name": raw.get("lastSurname"),
        "work_email": _work_email(raw),
        "birth_date": raw.get("birthDate"),
        "updated_at": raw.get("_lastModifiedDate"),
    }


def map_assignment(raw: dict[str, Any], options: EdFiOptions) -> dict[str, Any]:
    """An Ed-Fi ``staffEducationOrganizationAssignmentAssociation`` as `hr.assignment` fields.

    Ed-Fi has no position ID: the natural key is (education organization, classification,
    begin date, staff), so the position is the organization and classification together."""
    org = _ref(raw, "educationOrganizationReference", "educationOrganizationId")
    job_class = _descriptor(raw.get("staffClassificationDescriptor"))
    return {
        "employee_id": _ref(raw, "staffReference", "staffUniqueId"),
        "position_id": f"{org}:{job_class}",
        "job_class": job_class,
        "title": raw.get("positionTitle"),
        "fte": raw.get("fullTimeEquivalency"),
        "location": None if org is None else str(org),
        "start_date": raw.get("beginDate"),
        "end_date": raw.get("endDate"),
        "updated_at": raw.get("_lastModifiedDate"),
    }


def _account_code(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "code": raw.get("accountIdentifier"),
        "fund": _ref(raw, "fundDimensionReference", "code"),
        "function": _ref(raw, "functionDimensionReference", "code"),
        "object": _ref(raw, "objectDimensionReference", "code"),
        "location": _ref(raw, "operationalUnitDimensionReference", "code"),
        "program": _ref(raw, "programDimensionReference", "code"),
    }


def map_chart_of_account(raw: dict[str, Any], options: EdFiOptions) -> dict[str, Any]:
    """An Ed-Fi ``chartOfAccount`` (dimension references spelled out) as `accounting.account`."""
    return {
        "code": raw.get("accountIdentifier"),
        "account": _account_code(raw),
        "title": raw.get("accountName") or raw.get("accountIdentifier"),
        "updated_at": raw.get("_lastModifiedDate"),
    }


def _local_account(raw: Mapping[str, Any], options: EdFiOptions) -> tuple[Any, Any, Any]:
    identifier = _ref(raw, "localAccountReference", "accountIdentifier")
    fiscal_year = _ref(raw, "localAccountReference", "fiscalYear")
    account: Any = None
    if isinstance(identifier, str):
        try:
            account = msgspec.to_builtins(
                sdk.ACCOUNT_LAYOUTS[options.account_layout].parse(identifier)
            )
        except ValueError:
            account = None  # convert_rows reports the missing account with its field path
    return identifier, fiscal_year, account


def _money(value: Any) -> Any:
    """A JSON amount as Decimal (the toolkit already decodes numbers with a fraction as Decimal;
    a whole number arrives as int). Anything else is left for validation to report."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


def map_local_budget(raw: dict[str, Any], options: EdFiOptions) -> dict[str, Any]:
    """An Ed-Fi ``localBudget`` (an amount for a local account as of a date) as a budget line;
    each as-of date is its own budget version."""
    identifier, fiscal_year, account = _local_account(raw, options)
    return {
        "fiscal_year": fiscal_year,
        "account_code": identifier,
        "account": account,
        "amount": _money(raw.get("amount")),
        "budget_version": raw.get("asOfDate"),
        "updated_at": raw.get("_lastModifiedDate"),
    }


def map_local_actual(raw: dict[str, Any], options: EdFiOptions) -> dict[str, Any]:
    """An Ed-Fi ``localActual`` (the actual amount of a local account as of a date) as one
    journal line; a negative amount is a credit."""
    identifier, fiscal_year, account = _local_account(raw, options)
    amount = _money(raw.get("amount"))
    negative = isinstance(amount, Decimal) and amount < 0
    debit, credit = (Decimal(0), -amount) if negative else (amount, Decimal(0))
    return {
        "entry_id": f"actual:{identifier}:{raw.get('asOfDate')}",
        "line_number": 1,
        "posted_on": raw.get("asOfDate"),
        "account": account,
        "debit": debit,
        "credit": credit,
        "fiscal_year": fiscal_year,
        "updated_at": raw.get("_lastModifiedDate"),
    }


def staff_body(record: Any) -> dict[str, Any]:
    """An `hr.employee` as an Ed-Fi ``staff`` to POST (upsert by ``staffUniqueId``)."""
    body: dict[str, Any] = {
        "staffUniqueId": record.employee_id,
        "firstName": record.first_name,
        "lastSurname": record.last_name,
    }
    if record.middle_name:
        body["middleName"] = record.middle_name
    if record.birth_date:
        body["birthDate"] = record.birth_date.isoformat()
    if record.work_email:
        body["electronicMails"] = [
            {
                "electronicMailAddress": record.work_email,
                "electronicMailTypeDescriptor": "uri://ed-fi.org/ElectronicMailTypeDescriptor#Work",
            }
        ]
    return body


def assignment_body(record: Any) -> dict[str, Any]:
    """An `hr.assignment` as an Ed-Fi assignment association to POST. The education
    organization is the assignment's `location` (an Ed-Fi ``educationOrganizationId``)."""
    if not (record.location or "").isdigit():
        raise sdk.BadRecord(
            "location must be an Ed-Fi educationOrganizationId (digits) to write an assignment",
            position=f"assignment {record.key}",
        )
    body: dict[str, Any] = {
        "educationOrganizationReference": {"educationOrganizationId": int(record.location)},
        "staffReference": {"staffUniqueId": record.employee_id},
        "staffClassificationDescriptor": "uri://ed-fi.org/StaffClassificationDescriptor#"
        + record.job_class,
        "beginDate": record.start_date.isoformat(),
        "fullTimeEquivalency": float(record.fte),
    }
    if record.title:
        body["positionTitle"] = record.title
    if record.end_date:
        body["endDate"] = record.end_date.isoformat()
    return body


def _assignment_key(keys: Mapping[str, Any]) -> str:
    job_class = _descriptor(keys.get("staffClassificationDescriptor"))
    org = keys.get("educationOrganizationId")
    return f"{keys.get('staffUniqueId')}|{org}:{job_class}|{keys.get('beginDate')}"


def _assignment_query(key: str) -> dict[str, Any]:
    """An `hr.assignment` key (``staff|org:classification|begin date``) as the query for its
    Ed-Fi assignment association."""
    staff, rest = key.split("|", 1)
    position, begin = rest.rsplit("|", 1)
    org, job_class = position.split(":", 1)
    return {
        "staffUniqueId": staff,
        "educationOrganizationId": org,
        "staffClassificationDescriptor": "uri://ed-fi.org/StaffClassificationDescriptor#"
        + job_class,
        "beginDate": begin,
    }


def _budget_key(keys: Mapping[str, Any]) -> str:
    return f"{keys.get('fiscalYear')}|{keys.get('accountIdentifier')}|{keys.get('asOfDate')}"


def _actual_key(keys: Mapping[str, Any]) -> str:
    return f"actual:{keys.get('accountIdentifier')}:{keys.get('asOfDate')}|1"


RESOURCES: dict[str, Resource] = {
    "employees": Resource(
        "staffs",
        "hr.employee",
        "Ed-Fi staffs",
        map_staff,
        lambda keys: str(keys.get("staffUniqueId")),
        Writing(staff_body, lambda key: {"staffUniqueId": key}),
    ),
    "assignments": Resource(
        "staffEducationOrganizationAssignmentAssociations",
        "hr.assignment",
        "Ed-Fi staff assignment associations",
        map_assignment,
        _assignment_key,
        Writing(assignment_body, _assignment_query),
    ),
    "accounts": Resource(
        "chartOfAccounts",
        "accounting.account",
        "Ed-Fi chart of accounts",
        map_chart_of_account,
        lambda keys: str(keys.get("accountIdentifier")),
    ),
    "budget_lines": Resource(
        "localBudgets",
        "accounting.budget_line",
        "Ed-Fi local budgets",
        map_local_budget,
        _budget_key,
    ),
    "actuals": Resource(
        "localActuals",
        "accounting.journal_entry",
        "Ed-Fi local actuals, one journal line each",
        map_local_actual,
        _actual_key,
    ),
}


def map_rows(
    stream: str, rows: list[Any], options: EdFiOptions, first: int = 0
) -> tuple[list[sdk.Record], list[sdk.Reject]]:
    """Ed-Fi resources as canonical records, and the ones that cannot be, with the reason.
    `first` is the offset of `rows[0]` in the change window, for the reject's position."""
    resource = RESOURCES[stream]

    def position(index: int, raw: Any) -> str:
        identifier = raw.get("id") if isinstance(raw, dict) else None
        return f"{resource.path} #{first + index} id {identifier}"

    return sdk.map_objects(
        sdk.record_type(resource.record),
        rows,
        lambda raw: resource.map(raw, options),
        position,
        "an Ed-Fi resource is an object",
    )


# --- the connector ---------------------------------------------------------------------------


class EdFi(ClientCredentialsApi[EdFiOptions]):
    """An Ed-Fi ODS/API v7 (Data Standard 5): read by change version, write by natural key."""

    name = "edfi"
    title = "Ed-Fi ODS/API (v7, Data Standard 5)"
    options = EdFiOptions

    def _resource_path(self, stream: str) -> str:
        return f"{self.config.data_path.strip('/')}/{RESOURCES[stream].path}"

    # check and streams

    async def check(self) -> None:
        """The root answers as Ed-Fi, the credentials get a token, and every resource can be
        read; each failure says which of these it is."""
        base = self._base()
        probe = self._make_client()
        try:
            root = await probe.get_json("")
        except HttpStatusError as error:
            raise sdk.ConnectorConfigError(
                f"{base} is not an Ed-Fi ODS/API root: HTTP {error.status} (check base_url)"
            ) from None
        except sdk.TransientError as error:
            raise sdk.TransientError(f"cannot reach the Ed-Fi API at {base}: {error}") from None
        if not (isinstance(root, dict) and "dataModels" in root and "urls" in root):
            raise sdk.ConnectorConfigError(
                f"{base} is not an Ed-Fi ODS/API root: its answer has no dataModels and urls"
            )
        client = self.client
        assert self._auth is not None
        try:
            await self._auth.headers(client)
        except Retryable as error:
            raise sdk.TransientError(
                f"cannot reach the Ed-Fi token endpoint: {error.reason}"
            ) from None
        except sdk.AuthError as error:
            raise sdk.AuthError(
                f"the Ed-Fi API refused client_id {self.config.client_id!r} and its secret: {error}"
            ) from None
        for stream in RESOURCES:
            path = self._resource_path(stream)
            try:
                await client.get_json(path, params={"limit": 1})
            except sdk.AuthError:
                raise sdk.AuthError(
                    f"the API client {self.config.client_id!r} may not read {path} (HTTP 403): "
                    "ask the Ed-Fi administrator to grant its claim set this resource"
                ) from None
            except HttpStatusError as error:
                raise sdk.ConnectorConfigError(
                    f"{path}: HTTP {error.status}; is this a Data Standard 5 API?"
                ) from None

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=name,
                record=resource.record,
                description=f"{resource.description} (/{resource.path})",
                writable=resource.writing is not None,
            )
            for name, resource in RESOURCES.items()
        ]

    # read

    def _stream(self, stream: str) -> Resource:
        return self.offered(stream, RESOURCES)

    async def available_change_versions(self) -> tuple[int, int]:
        """(oldestChangeVersion, newestChangeVersion) of the ODS."""
        path = f"{self.config.change_queries_path.strip('/')}/availableChangeVersions"
        body = await self.client.get_json(path)
        try:
            return int(body["oldestChangeVersion"]), int(body["newestChangeVersion"])
        except (TypeError, KeyError, ValueError):
            raise sdk.ConnectorError(
                f"{path} answered without oldestChangeVersion and newestChangeVersion"
            ) from None

    async def _pages(
        self, path: str, params: dict[str, Any], offset: int
    ) -> AsyncIterator[tuple[int, list[Any]]]:
        """(offset, items) of each page from `offset` on; the first page asks the total
        (``Total-Count``) so the walk ends on the last page without asking for an empty one."""
        total: int | None = None
        size = self.config.page_size
        while total is None or offset < total:
            query = {**params, "offset": offset, "limit": size}
            if total is None:
                query["totalCount"] = "true"
            response = await self.client.request("GET", path, params=query)
            if total is None:
                header = response.headers.get("Total-Count")
                total = int(header) if header and header.isdigit() else None
            items = response.data
            if not isinstance(items, list):
                raise sdk.ConnectorError(
                    f"{path}: the answer is {type(items).__name__}, not a list of resources"
                )
            if not items:
                return
            yield offset, items
            offset += len(items)
            if total is None and len(items) < size:
                return

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        resource = self._stream(stream)
        state = state or {}
        done = state.get("change_version")
        if "target" in state:
            target, phase, offset = state["target"], state["phase"], state["offset"]
        else:
            _, target = await self.available_change_versions()
            if done is not None and target <= done:
                return
            phase, offset = "upserts", 0
        window: dict[str, Any] = {"maxChangeVersion": target}
        if done is not None:
            window["minChangeVersion"] = done + 1

        def position(phase: str, offset: int) -> sdk.State:
            return {"change_version": done, "target": target, "phase": phase, "offset": offset}

        path = self._resource_path(stream)
        if phase == "upserts":
            async for first, items in self._pages(path, window, offset):
                for start in range(0, len(items), self.batch_size):
                    chunk = items[start : start + self.batch_size]
                    records, rejects = map_rows(stream, chunk, self.config, first + start)
                    after = first + start + len(chunk)
                    yield sdk.Batch(
                        records=records, rejects=rejects, state=position("upserts", after)
                    )
            offset = 0
        if done is not None:  # a first read has nothing deleted to report
            async for first, items in self._pages(path + "/deletes", window, offset):
                keys = [
                    resource.deleted_key(item.get("keyValues") or {})
                    for item in items
                    if isinstance(item, dict)
                ]
                yield sdk.Batch(
                    records=[], deletes=keys, state=position("deletes", first + len(items))
                )
        yield sdk.Batch(records=[], state={"change_version": target})

    async def deleted_keys(self, stream: str, after: int, upto: int) -> list[str]:
        """The record keys of `stream` deleted in Ed-Fi after change version `after`, up to
        `upto`, from the resource's ``/deletes``."""
        resource = self._stream(stream)
        window = {"minChangeVersion": after + 1, "maxChangeVersion": upto}
        keys: list[str] = []
        async for _, items in self._pages(self._resource_path(stream) + "/deletes", window, 0):
            keys += [
                resource.deleted_key(i.get("keyValues") or {}) for i in items if isinstance(i, dict)
            ]
        return keys

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        self._stream(stream)
        records, rejects = map_rows(stream, [raw], self.config)
        if rejects:
            raise sdk.BadRecord(rejects[0].reason, position=rejects[0].position)
        return records[0]

    def pii_columns(self, stream: str) -> frozenset[str]:
        return frozenset({"birthDate"}) if stream == "employees" else frozenset()

    # write

    def _writing(self, stream: str) -> Writing:
        writing = self._stream(stream).writing
        if writing is None:
            raise sdk.ConnectorConfigError(
                f"stream {stream!r} cannot be written; writable: "
                + ", ".join(n for n, r in RESOURCES.items() if r.writing is not None)
            )
        return writing

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        """POST each record to its resource: Ed-Fi upserts by the resource's natural key, so a
        batch written twice leaves the ODS as written once."""
        writing = self._writing(stream)
        path = self._resource_path(stream)
        for record in batch.records:
            await self.client.request("POST", path, json=writing.body(record), idempotent=True)
        return sdk.WriteResult(written=len(batch.records))

    async def delete(self, stream: str, keys: list[str], member: str | None) -> int:
        """DELETE the resource of each key. Ed-Fi deletes by id only, so each is found first by
        its natural key; one already gone (none found, or 404) counts nothing. Ed-Fi keeps no
        deleted rows: the resource is gone from the ODS, and listed in its ``/deletes``."""
        writing = self._writing(stream)
        path = self._resource_path(stream)
        deleted = 0
        for key in keys:
            found = await self.client.get_json(path, params=writing.key_query(key))
            for row in found if isinstance(found, list) else ():
                if not (isinstance(row, dict) and row.get("id")):
                    continue
                try:
                    await self.client.request("DELETE", f"{path}/{row['id']}")
                except HttpStatusError as error:
                    if error.status != 404:  # deleted meanwhile
                        raise
                    continue
                deleted += 1
        return deleted

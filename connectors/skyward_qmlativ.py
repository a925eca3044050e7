"""Skyward Qmlativ HR: employees and their positions from the Qmlativ generic entity API.

Skyward documents the Qmlativ API in each district's own Swagger page (``{base_url}/swagger``),
behind the district's login, not publicly. This connector follows the shape that page and the
public clients of it (e.g. the ``rqmlativ`` R package) use:

- **auth**: OAuth 2.0 client credentials (key and secret of an API user created in Qmlativ's
  *Product Setup > Skyward API* area) at ``{base_url}/oauth/token`` (configurable, `token_path`);
- **generic entities**: ``GET {base_url}/Generic/{entity_id}/{Module}/{Object}/{page}/{size}``
  answers ``{"Objects": [...], "Paging": {"CurrentPage", "PageSize", "TotalRecords",
  "NextPageUrl"}}``; the connector follows ``NextPageUrl`` until there is none (or a page is
  empty), and asks only for the fields it maps (``searchFields``, related fields by path such
  as ``Name.FirstName``, answered as nested objects).

Streams: ``employees`` (``Employee/Employee`` → `hr.employee`) and ``assignments``
(``Employee/EmployeePosition`` → `hr.assignment`). Qmlativ's generic GET has no "changed
since" filter, so each read walks the whole entity: configure the route with
``mode = "full_refresh"``; the state is the next page's URL, so a cut read resumes there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from connectors.client_credentials import ClientCredentialsApi
from hub import sdk
from hub.sdk.http import (
    ApiOptions,
    HttpStatusError,
    Retryable,
)


class QmlativOptions(ApiOptions, kw_only=True):
    """Where the district's Qmlativ API is. `base_url` is the API root whose ``/swagger`` page
    documents it (e.g. ``https://skyward.example.org/Qmlativ/api``)."""

    base_url: Annotated[str, msgspec.Meta(description="Qmlativ API root URL")]
    client_id: Annotated[str, msgspec.Meta(description="API key of the Qmlativ API user")]
    token_path: str = "oauth/token"
    entity_id: Annotated[int, msgspec.Meta(description="Qmlativ entity (1: the district)")] = 1
    employee_object: str = "Employee/Employee"
    position_object: str = "Employee/EmployeePosition"
    page_size: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 500


def _get(raw: Mapping[str, Any], path: str) -> Any:
    """``Name.FirstName`` of a Qmlativ object (related objects come nested)."""
    value: Any = raw
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _stamp(value: Any) -> Any:
    """Qmlativ writes times without an offset (``2026-05-01T12:00:00``), in UTC for the API."""
    if isinstance(value, str) and "T" in value and not value.endswith("Z") and "+" not in value:
        return value + "Z"
    return value


def _status(raw: Mapping[str, Any]) -> str:
    if raw.get("IsTerminated"):
        return "terminated"
    if raw.get("IsOnLeave"):
        return "on_leave"
    return "active"


def map_employee(raw: dict[str, Any]) -> dict[str, Any]:
    """A Qmlativ ``Employee`` (with its ``Name``) as `hr.employee` fields."""
    return {
        "employee_id": raw.get("EmployeeNumber"),
        "state_staff_id": raw.get("StateEmployeeID"),
        "first_name": _get(raw, "Name.FirstName"),
        "middle_name": _get(raw, "Name.MiddleName"),
        "last_name": _get(raw, "Name.LastName"),
        "status": _status(raw),
        "hire_date": raw.get("HireDate"),
        "termination_date": raw.get("TerminationDate"),
        "work_email": raw.get("WorkEmailAddress"),
        "updated_at": _stamp(raw.get("ModifiedTime")),
    }


def map_position(raw: dict[str, Any]) -> dict[str, Any]:
    """A Qmlativ ``EmployeePosition`` (with its ``Position`` and ``Employee``) as `hr.assignment`."""
    fte = raw.get("FTE")
    return {
        "employee_id": _get(raw, "Employee.EmployeeNumber"),
        "position_id": _get(raw, "Position.Code"),
        "job_class": _get(raw, "Position.JobClass") or _get(raw, "Position.Code"),
        "title": _get(raw, "Position.Description"),
        "fte": fte,
        "location": _get(raw, "Building.Code"),
        "salary_step": raw.get("Step"),
        "start_date": raw.get("StartDate"),
        "end_date": raw.get("EndDate"),
        "updated_at": _stamp(raw.get("ModifiedTime")),
    }


@dataclass(frozen=True)
class Entity:
    option: str
    record: str
    fields: tuple[str, ...]
    map: Callable[[dict[str, Any]], dict[str, Any]]
    id_field: str


ENTITIES: dict[str, Entity] = {
    "employees": Entity(
        "employee_object",
        "hr.employee",
        (
            "EmployeeID",
            "EmployeeNumber",
            "StateEmployeeID",
            "Name.FirstName",
            "Name.MiddleName",
            "Name.LastName",
            "HireDate",
            "TerminationDate",
            "IsTerminated",
            "IsOnLeave",
            "WorkEmailAddress",
            "ModifiedTime",
        ),
        map_employee,
        "EmployeeID",
    ),
    "assignments": Entity(
        "position_object",
        "hr.assignment",
        (
            "EmployeePositionID",
            "Employee.EmployeeNumber",
            "Position.Code",
            "Position.JobClass",
            "Position.Description",
            "Building.Code",
            "FTE",
            "Step",
            "StartDate",
            "EndDate",
            "ModifiedTime",
        ),
        map_position,
        "EmployeePositionID",
    ),
}


def map_rows(stream: str, rows: list[Any], where: str) -> tuple[list[sdk.Record], list[sdk.Reject]]:
    """Qmlativ objects as canonical records, and the ones that cannot be, with the reason."""
    entity = ENTITIES[stream]

    def position(index: int, raw: Any) -> str:
        if not isinstance(raw, dict):
            return f"{where}:{index}"
        return f"{where}:{index} {entity.id_field} {raw.get(entity.id_field)}"

    return sdk.map_objects(
        sdk.record_type(entity.record),
        rows,
        entity.map,
        position,
        "a Qmlativ object is a JSON object",
    )


class SkywardQmlativ(ClientCredentialsApi[QmlativOptions]):
    """Skyward Qmlativ HR (generic entity API, OAuth 2.0 client credentials, paging links)."""

    name = "skyward_qmlativ"
    title = "Skyward Qmlativ HR"
    options = QmlativOptions

    def _entity(self, stream: str) -> Entity:
        return self.offered(stream, ENTITIES)

    def _first_page(self, stream: str, size: int | None = None) -> str:
        entity = ENTITIES[stream]
        path = getattr(self.config, entity.option).strip("/")
        return f"Generic/{self.config.entity_id}/{path}/1/{size or self.config.page_size}"

    async def check(self) -> None:
        """The token endpoint takes the credentials and each entity can be read."""
        client = self.client
        assert self._auth is not None
        try:
            await self._auth.headers(client)
        except Retryable as error:
            raise sdk.TransientError(
                f"cannot reach Qmlativ at {self._base()}: {error.reason}"
            ) from None
        except sdk.AuthError as error:
            if "HTTP 404" in str(error):
                raise sdk.ConnectorConfigError(
                    f"{self._base()} has no Qmlativ token endpoint ({self.config.token_path}): "
                    "HTTP 404 (check base_url)"
                ) from None
            raise sdk.AuthError(
                f"Qmlativ refused the API key {self.config.client_id!r} and its secret: {error}"
            ) from None
        for stream in ENTITIES:
            path = self._first_page(stream, 1)
            try:
                body = await client.get_json(path)
            except sdk.AuthError:
                raise sdk.AuthError(
                    f"the Qmlativ API user {self.config.client_id!r} may not read {path} "
                    "(HTTP 403): grant its security role read access to this object"
                ) from None
            except HttpStatusError as error:
                raise sdk.ConnectorConfigError(
                    f"{path}: HTTP {error.status}; is {self._base()} the Qmlativ API root?"
                ) from None
            if not (isinstance(body, dict) and isinstance(body.get("Objects"), list)):
                raise sdk.ConnectorConfigError(
                    f"{path} did not answer a Qmlativ page (no Objects list)"
                )

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=name,
                record=entity.record,
                description=f"Qmlativ {getattr(self.config, entity.option)}",
            )
            for name, entity in ENTITIES.items()
        ]

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        entity = self._entity(stream)
        url = (state or {}).get("next") or self._first_page(stream)
        params = {"searchFields": ",".join(entity.fields)}
        while url:
            response = await self.client.request("GET", url, params=params)
            body = response.data
            objects = body.get("Objects") if isinstance(body, dict) else None
            if not isinstance(objects, list):
                raise sdk.ConnectorError(
                    f"{response.url.with_query(None)}: the answer has no Objects list"
                )
            paging = body.get("Paging") if isinstance(body.get("Paging"), dict) else {}
            following = paging.get("NextPageUrl") or None if objects else None
            if following is not None and following == url:
                raise sdk.ConnectorError(f"{url}: NextPageUrl points to the same page")
            where = f"page {paging.get('CurrentPage', url)}"
            records, rejects = map_rows(stream, objects, where)
            yield sdk.Batch(records=records, rejects=rejects, state={"next": following})
            url = following

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        self._entity(stream)
        records, rejects = map_rows(stream, [raw], "dead letter")
        if rejects:
            raise sdk.BadRecord(rejects[0].reason, position=rejects[0].position)
        return records[0]

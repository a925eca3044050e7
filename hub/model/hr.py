"""HR records: employees and their position assignments, shaped after the Ed-Fi Data Standard 5.

Ed-Fi splits a staff member into ``Staff`` (the person), the employment association (hire and
separation) and ``StaffEducationOrganizationAssignmentAssociation`` (classification, position
title, begin/end dates, full-time equivalency). A district HR system usually exports the first two
as one employee row and the third as one row per position, so the hub keeps two records.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, ClassVar

import msgspec

from hub.model.accounting import AccountCode
from hub.model.base import Money, Pii, Record

EmploymentStatus = Annotated[str, msgspec.Meta(pattern="^(active|on_leave|terminated|retired)$")]

#: Full-time equivalency, 1.0 for one full-time position. msgspec cannot bound a Decimal, so the
#: usual range (0 to 1.5) is only documented.
Fte = Annotated[Decimal, msgspec.Meta(description="full-time equivalency, 0 to 1.5, decimal")]


class Employee(Record, frozen=True, kw_only=True):
    """One person employed by a district, after Ed-Fi Data Standard 5 ``Staff``.

    `employee_id` is the district HR system's ID (Ed-Fi ``StaffUniqueId``); `state_staff_id` is
    the state-assigned identifier where the state issues one. `hire_date` and `termination_date`
    are those of the Ed-Fi employment association. Birth date, SSN and personal contact details
    are PII.
    """

    record_name: ClassVar[str] = "hr.employee"
    key_fields: ClassVar[tuple[str, ...]] = ("employee_id",)

    employee_id: str
    state_staff_id: str | None = None
    first_name: str
    middle_name: str | None = None
    last_name: str
    status: EmploymentStatus = "active"
    hire_date: date | None = None
    termination_date: date | None = None
    work_email: str | None = None
    birth_date: Annotated[date, Pii] | None = None
    ssn: Annotated[str, Pii] | None = None
    home_address: Annotated[str, Pii] | None = None
    personal_email: Annotated[str, Pii] | None = None
    personal_phone: Annotated[str, Pii] | None = None


class Assignment(Record, frozen=True, kw_only=True):
    """One employee in one position from a start date, after Ed-Fi Data Standard 5
    ``StaffEducationOrganizationAssignmentAssociation``.

    `job_class` is the classification (Ed-Fi ``StaffClassificationDescriptor``, e.g. teacher,
    aide), `title` the position title, `location` the building or office code. `salary_step` is
    the step on the district's salary schedule as written (``MA+30 step 7``); `salary_amount`
    is the annual salary of the assignment. `account` is the charge account, NCES-coded.
    """

    record_name: ClassVar[str] = "hr.assignment"
    key_fields: ClassVar[tuple[str, ...]] = ("employee_id", "position_id", "start_date")

    employee_id: str
    position_id: str
    job_class: str
    title: str | None = None
    fte: Fte
    location: str | None = None
    salary_schedule: str | None = None
    salary_step: str | None = None
    salary_amount: Money | None = None
    start_date: date
    end_date: date | None = None
    account: AccountCode | None = None

"""How each service is billed, per fiscal year: ``billing.toml`` in the configuration folder.

A *plan* names the method, the meter it prices or splits by, and its money: a unit price (with
optional tiers), a base fee, the year's budget for cost pools, the actual cost for the year-end
true-up, a fee rate for supplier administrative fees. Member bases (RWADA, enrollment, employee
count) are given per fiscal year, because they change every year and last year's bills must
recompute from last year's figures. Amounts are written as quoted decimals (``"2.50"``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from hub.billing.allocation import AllocationError, RateCard
from hub.billing.allocation import Tier as AllocationTier

#: Bases every member has in cooperative.toml.
MEMBER_COUNTS = ("enrollment", "employees")

Method = Literal[
    "unit_price",
    "base_plus_usage",
    "proportional",
    "weighted",
    "equal",
    "patronage",
    "percentage_fee",
]

#: Methods that split a cost pool (the year's `budget`, a twelfth a month) among members.
POOL_METHODS = ("proportional", "weighted", "equal", "patronage")
#: Methods that need a meter: they price or split by usage.
METERED = ("unit_price", "base_plus_usage", "proportional", "patronage", "percentage_fee")


class Tier(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Units up to `up_to` (within the month) cost `price`; the last tier has no `up_to`."""

    up_to: Decimal | None = None
    price: Decimal


class Plan(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one service is billed in one fiscal year."""

    method: Method
    meter: str | None = None
    #: weighted: the basis to split by (``rwada``, ``enrollment``, ``employees`` or any basis
    #: named under ``[basis.FYyyyy]``).
    basis: str | None = None
    #: unit_price and base_plus_usage: the price per unit (tiers, if given, replace it).
    rate: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    #: base_plus_usage: the monthly fee per participating member.
    base_fee: Decimal | None = None
    #: Pool methods: the year's cost (or, for patronage, the refund pool), a twelfth billed a month.
    budget: Decimal | None = None
    #: The service's actual cost for the year: its last month carries the true-up.
    actual_cost: Decimal | None = None
    #: percentage_fee: the share of member sales a supplier owes (``"0.02"`` is 2 %).
    fee_rate: Decimal | None = None
    #: Members taking part (default: every member).
    members: tuple[str, ...] | None = None


class BillingPlans(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``billing.toml``: plans and member bases per fiscal year (``FY2027``)."""

    plans: dict[str, dict[str, Plan]] = msgspec.field(default_factory=dict)
    basis: dict[str, dict[str, dict[str, Decimal]]] = msgspec.field(default_factory=dict)


def plan_problems(
    plans: BillingPlans, members: set[str], services: set[str]
) -> list[tuple[str, str]]:
    """(key path, reason) for every plan that cannot be billed as written."""
    problems: list[tuple[str, str]] = []
    for year, by_service in plans.plans.items():
        if not _is_fiscal_year(year):
            problems.append((f"plans.{year}", "must be a fiscal year like FY2027"))
        for service, plan in by_service.items():
            key = f"plans.{year}.{service}"
            if service not in services:
                problems.append((key, f"no service {service!r} in cooperative.toml"))
            problems.extend((f"{key}.{k}", reason) for k, reason in _plan_problems(plan))
            for member in plan.members or ():
                if member not in members:
                    problems.append((f"{key}.members", f"no member {member!r}"))
            if (
                plan.method == "weighted"
                and plan.basis not in (None, *MEMBER_COUNTS)
                and plan.basis not in plans.basis.get(year, {})
            ):
                problems.append((f"{key}.basis", f"no basis {plan.basis!r} under [basis.{year}]"))
    for year, bases in plans.basis.items():
        if not _is_fiscal_year(year):
            problems.append((f"basis.{year}", "must be a fiscal year like FY2027"))
        for name, values in bases.items():
            for member, value in values.items():
                if member not in members:
                    problems.append((f"basis.{year}.{name}.{member}", "no such member"))
                elif value < 0:
                    problems.append((f"basis.{year}.{name}.{member}", "must not be negative"))
    return problems


def _plan_problems(plan: Plan) -> list[tuple[str, str]]:
    needs = {
        "unit_price": ("meter",),
        "base_plus_usage": ("meter", "base_fee"),
        "proportional": ("meter", "budget"),
        "weighted": ("basis", "budget"),
        "equal": ("budget",),
        "patronage": ("meter", "budget"),
        "percentage_fee": ("meter", "fee_rate"),
    }[plan.method]
    problems = [
        (name, f"required by method {plan.method!r}")
        for name in needs
        if getattr(plan, name) is None
    ]
    if plan.method in ("unit_price", "base_plus_usage") and plan.rate is None and not plan.tiers:
        problems.append(("rate", f"required by method {plan.method!r} (or give tiers)"))
    if plan.tiers or plan.rate is not None:
        try:
            rate_card(plan)
        except AllocationError as error:
            problems.append(("tiers" if plan.tiers else "rate", str(error)))
    for name in ("rate", "base_fee", "budget", "actual_cost", "fee_rate"):
        value = getattr(plan, name)
        if value is not None and not value.is_finite():
            problems.append((name, "must be a finite amount"))
    return problems


def rate_card(plan: Plan) -> RateCard:
    """The plan's price per unit: its tiers if it has them, else its flat rate."""
    if plan.tiers:
        return RateCard(tiers=tuple(AllocationTier(t.up_to, t.price) for t in plan.tiers))
    return RateCard(unit=plan.rate)


def _is_fiscal_year(name: str) -> bool:
    return len(name) == 6 and name.startswith("FY") and name[2:].isdigit()

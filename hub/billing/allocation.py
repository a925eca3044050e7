"""Money arithmetic of billing: splitting pools among members and pricing usage, exact to the cent.

Everything here is pure Decimal arithmetic with no database, so a statement recomputed from the
ledger comes out the same to the cent. Two rounding rules, each in its own function:

- a pool is split by `largest_remainder`, so the lines sum exactly to the pool;
- a charge computed per member (price times quantity, a percentage fee) is rounded half-up to the
  cent by `round_half_up`, the way an invoice line is.

Money is never float: a float anywhere is refused with `AllocationError`, since 0.1 as a float is
already not ten cents.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal

import msgspec

__all__ = [
    "CENT",
    "AllocationError",
    "RateCard",
    "Tier",
    "base_plus_usage",
    "equal_shares",
    "largest_remainder",
    "patronage_refund",
    "percentage_fee",
    "proportional",
    "round_half_up",
    "true_up",
    "unit_price",
    "weighted",
]

CENT = Decimal("0.01")

#: Digits kept by every Decimal operation here: enough that no pool of any real cooperative (nor
#: a 12-digit pool times a 10-digit price) is ever rounded by the context instead of by our rule.
PRECISION = 50

Amount = Decimal | int


class AllocationError(ValueError):
    """Inputs no allocation or price can be computed from; the message names the value and why."""


_ROUNDING = decimal.Context(
    prec=PRECISION,
    rounding=ROUND_HALF_UP,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
_EXACT = _ROUNDING.copy()
_EXACT.traps[decimal.Inexact] = True


@contextmanager
def _exact(what: str) -> Iterator[None]:
    """Arithmetic that is exact or fails, never rounded by whatever context the caller set."""
    try:
        with decimal.localcontext(_EXACT):
            yield
    except (decimal.Inexact, decimal.InvalidOperation):
        raise AllocationError(
            f"{what} needs more than {PRECISION} digits to compute exactly"
        ) from None


def _decimal(value: object, what: str) -> Decimal:
    """`value` as a finite Decimal, or an `AllocationError` naming `what` it was meant to be."""
    if isinstance(value, float):
        raise AllocationError(
            f"{what} must be a Decimal or int, not float {value!r}: money is never float "
            f"(write Decimal({str(value)!r}))"
        )
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise AllocationError(
            f"{what} must be a Decimal or int, not {type(value).__name__} {value!r}"
        )
    number = Decimal(value)
    if not number.is_finite():
        raise AllocationError(f"{what} must be a finite number, not {value}")
    return number


def _non_negative(value: object, what: str) -> Decimal:
    number = _decimal(value, what)
    if number < 0:
        raise AllocationError(f"{what} must not be negative, got {number}")
    return number


def _whole_units(amount: Decimal, unit: Decimal, what: str) -> int:
    """The number of `unit`s in `amount`; a fraction of a cent in a pool is an input error."""
    try:
        with decimal.localcontext(_EXACT):
            units = amount / unit
            whole = units == units.to_integral_value()
    except (decimal.Inexact, decimal.InvalidOperation):
        whole = False
    if not whole:
        raise AllocationError(f"{what} {amount} is not a whole number of {unit}")
    return int(units)


def _member_code(code: object) -> str:
    if not isinstance(code, str):
        raise AllocationError(f"member codes must be str, not {type(code).__name__} {code!r}")
    return code


def _integer_weights(weights: Mapping[str, Amount]) -> dict[str, int]:
    """Weights scaled by one power of ten to integers, so the split is integer arithmetic.

    Integer division gives the exact quotient and remainder whatever the size of the pool or
    the number of decimals in a weight, which a Decimal division at any precision would not.
    """
    exponents: dict[str, tuple[int, int]] = {}
    for code, value in weights.items():
        weight = _non_negative(value, f"weight of member {_member_code(code)!r}")
        _, digits, exponent = weight.as_tuple()
        assert isinstance(exponent, int)  # finite, checked above
        exponents[code] = (int("".join(map(str, digits))), exponent)
    lowest = min((exponent for _, exponent in exponents.values()), default=0)
    highest = max((exponent for _, exponent in exponents.values()), default=0)
    if highest - lowest > PRECISION:
        # A weight like 1E+999999 would otherwise build an integer of a million digits.
        raise AllocationError(
            f"weights span more than {PRECISION} decimal places; write them in one scale"
        )
    return {
        code: coefficient * 10 ** (exponent - lowest)
        for code, (coefficient, exponent) in exponents.items()
    }


def _in_units(count: int, unit: Decimal) -> Decimal:
    with _exact(f"a share of {count} units of {unit}"):
        return count * unit


def round_half_up(amount: Amount, what: str = "amount") -> Decimal:
    """`amount` rounded to the cent, halves away from zero, as an invoice line is rounded."""
    number = _decimal(amount, what)
    try:
        return number.quantize(CENT, rounding=ROUND_HALF_UP, context=_ROUNDING)
    except decimal.InvalidOperation:
        raise AllocationError(f"{what} {number} has more than {PRECISION} digits") from None


def largest_remainder(
    pool: Amount, weights: Mapping[str, Amount], *, unit: Decimal = CENT
) -> dict[str, Decimal]:
    """Split `pool` in proportion to `weights` so the shares sum exactly to the pool.

    Each member gets its exact share truncated toward zero to the `unit`; the units left over go
    one each to the members with the largest remainders, ties to the smaller member code, so the
    same inputs always give the same cents. A negative pool (a refund) splits as the mirror
    image of the positive one. Every share is less than one unit from the exact proportion, a
    member of weight 0 gets 0, and the result is in member-code order.
    """
    amount = _decimal(pool, "pool")
    unit = _decimal(unit, "unit")
    if unit <= 0:
        raise AllocationError(f"unit must be positive, got {unit}")
    if not isinstance(weights, Mapping):
        raise AllocationError(
            f"weights must be a mapping of member code to weight, not {type(weights).__name__}"
        )
    if not weights:
        raise AllocationError(f"cannot allocate {amount} among no members")
    units = _whole_units(amount, unit, "pool")
    scaled = _integer_weights(weights)
    codes = sorted(scaled)
    total = sum(scaled.values())
    if total == 0:
        if units != 0:
            raise AllocationError(
                f"cannot allocate {amount}: the total weight of members {', '.join(codes)} is 0"
            )
        return {code: _in_units(0, unit) for code in codes}

    # Split the magnitude and put the sign back, so a refund is the exact mirror of a charge
    # and "truncated toward zero" is plain floor division.
    magnitude = abs(units)
    shares: dict[str, int] = {}
    remainders: dict[str, int] = {}
    for code in codes:
        shares[code], remainders[code] = divmod(magnitude * scaled[code], total)
    leftover = magnitude - sum(shares.values())
    # Fewer units are left over than there are non-zero remainders, so none reaches weight 0.
    for code in sorted(codes, key=lambda code: (-remainders[code], code))[:leftover]:
        shares[code] += 1
    sign = -1 if units < 0 else 1
    return {code: _in_units(sign * shares[code], unit) for code in codes}


def proportional(pool: Amount, usage: Mapping[str, Amount]) -> dict[str, Decimal]:
    """Split a service's cost pool by each member's usage of one meter (tickets, hours, GB)."""
    return largest_remainder(pool, usage)


def weighted(pool: Amount, basis: Mapping[str, Amount]) -> dict[str, Decimal]:
    """Split a pool by a member basis from the configuration: RWADA, enrollment, employees.

    The arithmetic is `proportional`'s; the name says the weights are a standing basis rather
    than metered usage, which is how the business office reads a statement.
    """
    return largest_remainder(pool, basis)


def equal_shares(pool: Amount, members: Iterable[str]) -> dict[str, Decimal]:
    """Split a pool evenly; the odd cents go to the smallest member codes, one each."""
    if isinstance(members, str):
        raise AllocationError(
            f"members must be a collection of member codes, not the single str {members!r}"
        )
    codes = [_member_code(code) for code in members]
    duplicated = sorted({code for code in codes if codes.count(code) > 1})
    if duplicated:
        raise AllocationError(f"members listed more than once: {', '.join(duplicated)}")
    return largest_remainder(pool, dict.fromkeys(codes, 1))


def base_plus_usage(
    base_fee: Amount, unit_price: Amount, usage: Mapping[str, Amount]
) -> dict[str, Decimal]:
    """Charge each member a base fee plus a price per unit used, rounded half-up per member."""
    fee = _non_negative(base_fee, "base fee")
    price = _non_negative(unit_price, "unit price")
    charges: dict[str, Decimal] = {}
    for code in sorted(usage, key=_member_code):
        quantity = _non_negative(usage[code], f"usage of member {code!r}")
        with _exact(f"the charge to member {code!r}"):
            exact = fee + price * quantity
        charges[code] = round_half_up(exact)
    return charges


class Tier(msgspec.Struct, frozen=True):
    """One band of a graduated rate: units beyond the previous band up to `up_to` cost `price`.

    `up_to` is a cumulative quantity; ``None`` means no upper bound and ends the card.
    """

    up_to: Decimal | None
    price: Decimal


class RateCard(msgspec.Struct, frozen=True, kw_only=True):
    """A per-unit price for a service: a flat `unit` price, or graduated `tiers`, not both.

    Graduated means each band's units are priced at that band's rate (like an income tax), not
    the whole quantity at the rate of the band it ends in, so crossing a boundary never makes a
    larger quantity cost less.
    """

    unit: Decimal | None = None
    tiers: tuple[Tier, ...] = ()

    def __post_init__(self) -> None:
        if (self.unit is None) == (not self.tiers):
            raise AllocationError("a rate card needs either a unit price or tiers, not both")
        if self.unit is not None:
            _non_negative(self.unit, "unit price")
            return
        previous = Decimal(0)
        for number, tier in enumerate(self.tiers, start=1):
            _non_negative(tier.price, f"price of tier {number}")
            if tier.up_to is None:
                if number != len(self.tiers):
                    raise AllocationError(
                        f"tier {number} is unbounded (up_to None) but is not the last tier"
                    )
                continue
            bound = _decimal(tier.up_to, f"up_to of tier {number}")
            if bound <= previous:
                raise AllocationError(
                    f"tier {number} ends at {bound}, not above the previous boundary "
                    f"{previous}: tiers must ascend"
                )
            previous = bound
        if self.tiers[-1].up_to is not None:
            raise AllocationError(
                f"the last tier ends at {self.tiers[-1].up_to}; it must be unbounded "
                "(up_to None) so every quantity has a price"
            )

    def charge(self, quantity: Amount) -> Decimal:
        """The price of `quantity` units, rounded half-up to the cent once, at the end."""
        units = _non_negative(quantity, "quantity")
        with _exact(f"the charge for {units} units"):
            if self.unit is not None:
                total = self.unit * units
            else:
                total = Decimal(0)
                floor = Decimal(0)
                for tier in self.tiers:
                    top = units if tier.up_to is None else min(units, Decimal(tier.up_to))
                    total += (top - floor) * tier.price
                    if top == units:
                        break
                    floor = top
        return round_half_up(total)


def unit_price(usage: Mapping[str, Amount], card: RateCard) -> dict[str, Decimal]:
    """Charge each member for its own quantity at the rate card, rounded half-up per member."""
    return {
        code: card.charge(_non_negative(usage[code], f"usage of member {code!r}"))
        for code in sorted(usage, key=_member_code)
    }


def true_up(
    actual_cost: Amount, billed: Mapping[str, Amount], participation: Mapping[str, Amount]
) -> dict[str, Decimal]:
    """The year-end adjustment that makes what members were billed add up to the actual cost.

    Members are billed on an estimate during the year; the difference (actual cost minus the
    total billed) is shared pro rata to participation. Positive is a deficit assessed, negative
    a surplus refunded. The result covers every member billed or participating (a member billed
    but not participating gets 0), so billed plus adjustment sums exactly to the actual cost.
    """
    cost = _decimal(actual_cost, "actual cost")
    _whole_units(cost, CENT, "actual cost")
    total_billed = Decimal(0)
    for code in billed:
        amount = _decimal(billed[code], f"amount billed to member {_member_code(code)!r}")
        _whole_units(amount, CENT, f"amount billed to member {code!r}")
        with _exact("the total billed"):
            total_billed += amount
    with _exact("the true-up difference"):
        difference = cost - total_billed
    basis = {code: participation.get(code, 0) for code in {*billed, *participation}}
    return largest_remainder(difference, basis)


def percentage_fee(volume: Mapping[str, Amount], rate: Amount) -> dict[str, Decimal]:
    """Each supplier's administrative fee: its sales to members times `rate`, half-up per supplier.

    `rate` is a fraction, ``Decimal("0.02")`` for 2 percent. Sales may be negative (credits).
    """
    fraction = _non_negative(rate, "rate")
    fees: dict[str, Decimal] = {}
    for supplier in sorted(volume, key=_member_code):
        sales = _decimal(volume[supplier], f"sales volume of {supplier!r}")
        with _exact(f"the fee of {supplier!r}"):
            exact = sales * fraction
        fees[supplier] = round_half_up(exact)
    return fees


def patronage_refund(pool: Amount, spend: Mapping[str, Amount]) -> dict[str, Decimal]:
    """Split a member-owned cooperative's refund pool by each member's spend on its contracts."""
    return largest_remainder(pool, spend)

"""Billing arithmetic as the business office checks it: every split sums to its pool, to the cent."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.billing.allocation import (
    CENT,
    AllocationError,
    RateCard,
    Tier,
    base_plus_usage,
    equal_shares,
    largest_remainder,
    patronage_refund,
    percentage_fee,
    proportional,
    true_up,
    unit_price,
    weighted,
)

D = Decimal


# Examples ---------------------------------------------------------------------------------------


def test_rwada_split_of_an_administration_budget_gives_the_two_leftover_cents_to_the_largest_remainders():
    # given the administration budget and each district's RWADA
    rwada = {"eastview": D("4213.7"), "millbrook": D("2981.9"), "northfield": D("1405.1")}

    # when the budget is split by RWADA
    shares = weighted(D("1000000.00"), rwada)

    # then the exact shares 489925.2386…, 346704.3380…, 163370.4233… are truncated, and the two
    # cents left over go to eastview (.86 of a cent) and millbrook (.80), not to northfield (.33)
    assert shares == {
        "eastview": D("489925.24"),
        "millbrook": D("346704.34"),
        "northfield": D("163370.42"),
    }
    assert sum(shares.values()) == D("1000000.00")


def test_a_meter_split_follows_usage_and_a_member_that_used_nothing_pays_nothing():
    tickets = {"millbrook": 30, "eastview": 70, "northfield": 0}

    shares = proportional(D("1234.57"), tickets)

    assert shares == {"eastview": D("864.20"), "millbrook": D("370.37"), "northfield": D("0.00")}
    assert list(shares) == ["eastview", "millbrook", "northfield"]


def test_a_refund_pool_splits_as_the_mirror_image_of_a_charge():
    members = {"eastview": 1, "millbrook": 1, "northfield": 1}

    assert largest_remainder(D("-100.00"), members) == {
        "eastview": D("-33.34"),
        "millbrook": D("-33.33"),
        "northfield": D("-33.33"),
    }


def test_a_zero_pool_with_no_weight_at_all_allocates_zero_to_everyone():
    assert largest_remainder(D("0.00"), {"eastview": 0, "millbrook": 0}) == {
        "eastview": D("0.00"),
        "millbrook": D("0.00"),
    }


def test_a_pool_can_be_split_in_another_unit_such_as_whole_dollars():
    shares = largest_remainder(
        D("100"), {"eastview": 1, "millbrook": 1, "northfield": 1}, unit=D(1)
    )

    assert shares == {"eastview": D(34), "millbrook": D(33), "northfield": D(33)}


def test_a_pool_beyond_the_default_decimal_precision_is_split_exactly():
    # 10^30 dollars plus one cent has 33 digits, more than Python's default 28
    pool = D("1000000000000000000000000000000.01")

    shares = largest_remainder(pool, {"eastview": 1, "millbrook": 1})

    assert shares == {
        "eastview": D("500000000000000000000000000000.01"),
        "millbrook": D("500000000000000000000000000000.00"),
    }


def test_equal_shares_give_the_odd_cents_to_the_smallest_member_codes():
    shares = equal_shares(D("0.05"), ["northfield", "millbrook", "eastview"])

    assert shares == {"eastview": D("0.02"), "millbrook": D("0.02"), "northfield": D("0.01")}


def test_base_plus_usage_rounds_each_members_charge_half_up():
    # 250.00 + 3 * 0.125 = 250.375 and 250.00 + 12.5 * 0.125 = 251.5625
    charges = base_plus_usage(D("250.00"), D("0.125"), {"millbrook": D("12.5"), "eastview": 3})

    assert charges == {"eastview": D("250.38"), "millbrook": D("251.56")}


CO_SER_HELP_DESK = RateCard(
    tiers=(
        Tier(up_to=D(100), price=D("12.00")),
        Tier(up_to=D(500), price=D("9.50")),
        Tier(up_to=None, price=D("7.25")),
    )
)


def test_a_coser_tiered_unit_price_charges_each_band_at_its_own_rate():
    usage = {"eastview": 80, "millbrook": 250, "northfield": 620, "westbury": 0}

    charges = unit_price(usage, CO_SER_HELP_DESK)

    assert charges == {
        "eastview": D("960.00"),  # 80 * 12.00
        "millbrook": D("2625.00"),  # 100 * 12.00 + 150 * 9.50
        "northfield": D("5870.00"),  # 100 * 12.00 + 400 * 9.50 + 120 * 7.25
        "westbury": D("0.00"),
    }


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (D(100), D("1200.00")),
        (D("100.5"), D("1204.75")),
        (D(500), D("5000.00")),
        (D(501), D("5007.25")),
    ],
)
def test_a_tier_boundary_is_the_last_unit_of_its_band(quantity, expected):
    assert CO_SER_HELP_DESK.charge(quantity) == expected


def test_a_flat_unit_price_rounds_half_up_not_to_even():
    card = RateCard(unit=D("0.125"))

    assert card.charge(1) == D("0.13")
    assert card.charge(D("0.2")) == D("0.03")  # 0.025


def test_a_true_up_refunds_a_surplus_pro_rata_to_participation():
    billed = {"eastview": D("40000.00"), "millbrook": D("35000.00"), "northfield": D("25000.00")}
    participation = {"eastview": 40, "millbrook": 35, "northfield": 25}

    adjustment = true_up(D("95000.00"), billed, participation)

    assert adjustment == {
        "eastview": D("-2000.00"),
        "millbrook": D("-1750.00"),
        "northfield": D("-1250.00"),
    }


def test_a_true_up_assesses_a_deficit_to_the_cent():
    billed = {"eastview": D("40000.00"), "millbrook": D("35000.00"), "northfield": D("25000.00")}
    participation = {"eastview": D("1.0"), "millbrook": D("1.0"), "northfield": D("1.0")}

    adjustment = true_up(D("100100.00"), billed, participation)

    assert adjustment == {"eastview": D("33.34"), "millbrook": D("33.33"), "northfield": D("33.33")}
    assert sum(billed.values()) + sum(adjustment.values()) == D("100100.00")


def test_a_member_billed_but_not_participating_gets_a_zero_adjustment():
    billed = {"eastview": D("600.00"), "millbrook": D("400.00")}

    adjustment = true_up(D("1100.00"), billed, {"eastview": 1})

    assert adjustment == {"eastview": D("100.00"), "millbrook": D("0.00")}


def test_a_two_percent_supplier_fee_is_rounded_half_up_per_supplier():
    volume = {"bluebird-bus": D("9876.25"), "acme-office": D("125432.17"), "credit-co": D("-10.25")}

    fees = percentage_fee(volume, D("0.02"))

    assert fees == {
        "acme-office": D("2508.64"),  # 2508.6434
        "bluebird-bus": D("197.53"),  # 197.525
        "credit-co": D("-0.21"),  # -0.205, a credit rounds away from zero too
    }


def test_a_patronage_refund_follows_contract_spend():
    spend = {"eastview": D("512345.67"), "millbrook": D("301234.56"), "northfield": D("198765.43")}

    refund = patronage_refund(D("10000.00"), spend)

    # exact shares 5060.9756…, 2975.6097…, 1963.4165…: the two leftover cents go to millbrook
    # (.97 of a cent) and eastview (.56)
    assert refund == {
        "eastview": D("5060.98"),
        "millbrook": D("2975.61"),
        "northfield": D("1963.41"),
    }


# Errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool", "weights", "message"),
    [
        (D("10.00"), {}, "cannot allocate 10.00 among no members"),
        (
            D("10.00"),
            {"eastview": 0, "millbrook": 0},
            "total weight of members eastview, millbrook is 0",
        ),
        (D("10.005"), {"eastview": 1}, "pool 10.005 is not a whole number of 0.01"),
        (D("10.00"), {"eastview": -1}, "weight of member 'eastview' must not be negative, got -1"),
        (D("10.00"), {"eastview": D("NaN")}, "weight of member 'eastview' must be a finite number"),
        (D("Infinity"), {"eastview": 1}, "pool must be a finite number, not Infinity"),
        (
            0.1,
            {"eastview": 1},
            "pool must be a Decimal or int, not float 0.1: money is never float",
        ),
        (
            D("1.00"),
            {"eastview": 0.5},
            "weight of member 'eastview' must be a Decimal or int, not float",
        ),
        (
            D("1.00"),
            {"eastview": "3"},
            "weight of member 'eastview' must be a Decimal or int, not str",
        ),
        (D("1.00"), {7: 1}, "member codes must be str, not int 7"),
        (D("1.00"), [("eastview", 1)], "weights must be a mapping"),
    ],
)
def test_impossible_allocations_are_refused_with_the_reason(pool, weights, message):
    with pytest.raises(AllocationError, match=_literally(message)):
        largest_remainder(pool, weights)


def test_allocation_errors_are_value_errors():
    assert issubclass(AllocationError, ValueError)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (["eastview", "millbrook", "eastview"], "members listed more than once: eastview"),
        ("eastview", "not the single str 'eastview'"),
        ([], "among no members"),
    ],
)
def test_equal_shares_refuses_a_doubtful_member_list(members, message):
    with pytest.raises(AllocationError, match=_literally(message)):
        equal_shares(D("10.00"), members)


@pytest.mark.parametrize(
    ("card", "message"),
    [
        (lambda: RateCard(), "either a unit price or tiers, not both"),
        (lambda: RateCard(unit=D(1), tiers=(Tier(None, D(1)),)), "either a unit price or tiers"),
        (lambda: RateCard(unit=D(-1)), "unit price must not be negative"),
        (lambda: RateCard(unit=1.5), "unit price must be a Decimal or int, not float 1.5"),
        (
            lambda: RateCard(tiers=(Tier(D(500), D(2)), Tier(D(100), D(1)), Tier(None, D(1)))),
            "tier 2 ends at 100, not above the previous boundary 500: tiers must ascend",
        ),
        (
            lambda: RateCard(tiers=(Tier(D(100), D(2)), Tier(D(500), D(1)))),
            "the last tier ends at 500; it must be unbounded",
        ),
        (
            lambda: RateCard(tiers=(Tier(None, D(2)), Tier(None, D(1)))),
            "tier 1 is unbounded (up_to None) but is not the last tier",
        ),
        (lambda: RateCard(tiers=(Tier(None, D(-2)),)), "price of tier 1 must not be negative"),
    ],
)
def test_a_rate_card_that_cannot_price_every_quantity_is_refused(card, message):
    with pytest.raises(AllocationError, match=_literally(message)):
        card()


def test_pricing_refuses_negative_quantities_and_float_rates():
    with pytest.raises(AllocationError, match=_literally("usage of member 'eastview' must not be")):
        unit_price({"eastview": -1}, CO_SER_HELP_DESK)
    with pytest.raises(AllocationError, match=_literally("quantity must not be negative, got -2")):
        CO_SER_HELP_DESK.charge(-2)
    with pytest.raises(
        AllocationError, match=_literally("rate must be a Decimal or int, not float")
    ):
        percentage_fee({"acme-office": D("100.00")}, 0.02)
    with pytest.raises(AllocationError, match=_literally("base fee must be a Decimal or int")):
        base_plus_usage(250.0, D(1), {"eastview": 1})


def test_a_true_up_refuses_fractions_of_a_cent():
    with pytest.raises(AllocationError, match=_literally("actual cost 10.001 is not a whole")):
        true_up(D("10.001"), {"eastview": D("5.00")}, {"eastview": 1})
    with pytest.raises(
        AllocationError, match=_literally("amount billed to member 'eastview' 5.001 is not a whole")
    ):
        true_up(D("10.00"), {"eastview": D("5.001")}, {"eastview": 1})


def _literally(message: str) -> str:
    return re.escape(message)


# Properties -------------------------------------------------------------------------------------

CODES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
POOLS = st.integers(min_value=-(10**12), max_value=10**12).map(lambda cents: D(cents).scaleb(-2))
WEIGHT = st.one_of(
    st.just(D(0)),
    st.integers(min_value=0, max_value=10**9),
    st.decimals(min_value=0, max_value=10**9, places=4, allow_nan=False, allow_infinity=False),
)


@st.composite
def weight_maps(draw: st.DrawFn) -> dict[str, Decimal | int]:
    """1 to 60 members with weights 0 to 10^9, at least one of them positive."""
    weights = draw(st.dictionaries(CODES, WEIGHT, min_size=1, max_size=60))
    if not any(weight > 0 for weight in weights.values()):
        weights[draw(st.sampled_from(sorted(weights)))] = draw(st.integers(1, 10**9))
    return weights


@given(POOLS, weight_maps())
def test_shares_sum_exactly_to_the_pool(pool, weights):
    assert sum(largest_remainder(pool, weights).values()) == pool


@given(POOLS, weight_maps())
def test_each_share_is_less_than_a_cent_from_the_exact_proportion(pool, weights):
    total = sum(Fraction(weight) for weight in weights.values())

    shares = largest_remainder(pool, weights)

    for code, share in shares.items():
        exact = Fraction(pool) * Fraction(weights[code]) / total
        assert abs(Fraction(share) - exact) < Fraction(1, 100)
        assert share == share.quantize(CENT)


@given(POOLS, weight_maps())
def test_a_member_of_weight_zero_gets_zero(pool, weights):
    shares = largest_remainder(pool, weights)

    assert all(shares[code] == 0 for code, weight in weights.items() if weight == 0)
    assert list(shares) == sorted(weights)


@given(POOLS, weight_maps(), st.data())
def test_the_same_inputs_in_any_order_give_the_same_cents(pool, weights, data):
    shuffled = dict(data.draw(st.permutations(list(weights.items()))))

    assert largest_remainder(pool, shuffled) == largest_remainder(pool, weights)


@given(
    POOLS,
    st.lists(CODES, min_size=1, max_size=60, unique=True),
    st.integers(min_value=1, max_value=10**9),
)
def test_with_equal_weights_the_smallest_codes_get_the_extra_cents(pool, codes, weight):
    cents = int(pool * 100)
    base, extra = divmod(abs(cents), len(codes))
    sign = -1 if cents < 0 else 1
    expected = {
        code: D(sign * (base + 1 if rank < extra else base)).scaleb(-2)
        for rank, code in enumerate(sorted(codes))
    }

    assert largest_remainder(pool, dict.fromkeys(codes, weight)) == expected


@given(POOLS, weight_maps())
def test_a_larger_weight_never_gets_less_than_a_smaller_one(pool, weights):
    shares = largest_remainder(pool, weights)

    for larger, larger_weight in weights.items():
        for smaller, smaller_weight in weights.items():
            if larger_weight > smaller_weight:
                assert abs(shares[larger]) >= abs(shares[smaller])


@given(POOLS, weight_maps())
def test_a_refund_is_the_mirror_image_of_a_charge(pool, weights):
    charge = largest_remainder(pool, weights)

    refund = largest_remainder(-pool, weights)

    assert refund == {code: -share for code, share in charge.items()}


@given(POOLS, st.data())
def test_after_a_true_up_billed_plus_adjustment_is_the_actual_cost(actual_cost, data):
    participation = data.draw(weight_maps())
    billed = data.draw(st.dictionaries(st.sampled_from(sorted(participation)) | CODES, POOLS))

    adjustment = true_up(actual_cost, billed, participation)

    assert sum(billed.values()) + sum(adjustment.values()) == actual_cost
    assert set(adjustment) == set(billed) | set(participation)


@given(
    st.decimals(min_value=0, max_value=10**6, places=2),
    st.decimals(min_value=0, max_value=10**6, places=2),
)
def test_a_graduated_charge_never_falls_as_quantity_rises(first, second):
    low, high = sorted((first, second))

    assert CO_SER_HELP_DESK.charge(low) <= CO_SER_HELP_DESK.charge(high)

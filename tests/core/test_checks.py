"""core.checks judges a row's check constraints as PostgreSQL does, or says it cannot."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db.models import CheckConstraint, F, Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import checks
from gifting.models import Gift, GiftStatus, HoldReason

GIFT_CHECKS = [c for c in Gift._meta.constraints if isinstance(c, CheckConstraint)]
WALLET = "0x" + "ab" * 20
MOMENT = datetime(2026, 12, 1, tzinfo=UTC)

gifts = st.builds(
    lambda amount, currency, email, wallet, status, hold, hold_until, delivered_at: Gift(
        amount=amount,
        currency=currency,
        recipient_email=email,
        recipient_wallet=wallet,
        status=status,
        hold=hold,
        hold_until=hold_until,
        delivered_at=delivered_at,
    ),
    amount=st.sampled_from([Decimal("-5"), Decimal("0"), Decimal("0.01"), Decimal("25.00")]),
    currency=st.sampled_from(["EUR", "eur", "EU", "EURO", "", "E1R"]),
    email=st.sampled_from(["", "bea@example.com"]),
    wallet=st.sampled_from(["", WALLET]),
    status=st.sampled_from([*GiftStatus.values, "bogus"]),
    hold=st.sampled_from([*HoldReason.values, "", "bogus"]),
    hold_until=st.sampled_from([None, MOMENT]),
    delivered_at=st.sampled_from([None, MOMENT]),
)


def database_says_it_holds(constraint: CheckConstraint, gift: Gift) -> bool:
    try:
        constraint.validate(Gift, gift)
    except ValidationError:
        return False
    return True


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gift=gifts)
def test_python_and_the_database_agree_on_every_gift_check(gift):
    for constraint in GIFT_CHECKS:
        python_holds = checks.evaluate(constraint.condition, gift) is not False
        assert python_holds == database_says_it_holds(constraint, gift), (constraint.name, vars(gift))


def test_sql_three_valued_logic():
    gift = Gift(amount=None, currency="EUR")
    assert checks.evaluate(Q(amount__gt=0), gift) is None  # unknown: a check passes
    assert checks.evaluate(~Q(amount__gt=0), gift) is None
    assert checks.evaluate(Q(amount__gt=0) | Q(currency="EUR"), gift) is True
    assert checks.evaluate(Q(amount__gt=0) & Q(currency="USD"), gift) is False
    assert checks.evaluate(Q(amount__isnull=True), gift) is True


@pytest.mark.parametrize(
    "condition",
    [Q(amount__gt=F("amount")), Q(sender__username="x"), Q(currency__iexact="eur"), Q(created_at__year=2026)],
)
def test_what_it_cannot_judge_is_left_to_the_database(condition):
    with pytest.raises(checks.Unsupported):
        checks.evaluate(condition, Gift(amount=Decimal("1"), currency="EUR"))


def test_a_valid_gift_violates_nothing():
    gift = Gift(amount=Decimal("25.00"), currency="EUR", recipient_email="bea@example.com", status=GiftStatus.QUEUED)
    assert checks.violated_checks(gift) == []

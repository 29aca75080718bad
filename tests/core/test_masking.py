"""Masking personal data: the first letter of an email and its domain; a wallet's ends."""

import pytest

from core.masking import mask_email, mask_recipient, mask_wallet

WALLET = "0x12" + "3" * 34 + "abcd"


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("recipient@example.com", "r***@example.com"),
        ("r@example.com", "r***@example.com"),
        ("Jane.Doe+gifts@mail.example.org", "J***@mail.example.org"),
        ("@example.com", "***@example.com"),
        ("no-at-sign", "***"),
        ("", "***"),
    ],
)
def test_mask_email_keeps_only_the_first_character_and_the_domain(email, masked):
    assert mask_email(email) == masked


def test_mask_email_hides_a_quoted_local_part_that_contains_an_at_sign():
    # The API accepts this address: Django's EmailValidator splits on the last "@".
    masked = mask_email('"john@home"@example.com')
    assert masked.endswith("***@example.com")
    assert "home" not in masked


def test_mask_wallet_keeps_the_prefix_and_the_last_four_digits():
    assert len(WALLET) == 42
    assert mask_wallet(WALLET) == "0x12…abcd"


@pytest.mark.parametrize("wallet", ["", "0x", "0x123456"])
def test_mask_wallet_hides_a_value_too_short_to_mask(wallet):
    assert mask_wallet(wallet) == "***"


def test_masked_values_never_contain_the_hidden_part():
    assert "ecipient" not in mask_email("recipient@example.com")
    assert "3333" not in mask_wallet(WALLET)


@pytest.mark.parametrize(
    ("email", "wallet", "masked"),
    [
        ("recipient@example.com", "", "r***@example.com"),
        ("", WALLET, "0x12…abcd"),
        ("recipient@example.com", WALLET, "r***@example.com"),
    ],
)
def test_mask_recipient_masks_whichever_recipient_is_set(email, wallet, masked):
    assert mask_recipient(email=email, wallet=wallet) == masked

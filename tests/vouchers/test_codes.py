"""Voucher codes: readable groups, an unambiguous alphabet, enough entropy."""

import re

import pytest

from vouchers import codes

CODE_PATTERN = re.compile(r"^[A-Z0-9]{4}(-[A-Z0-9]{4}){4}$")


def test_a_code_is_five_groups_of_four_joined_by_dashes():
    code = codes.generate_code()
    assert CODE_PATTERN.match(code), code
    groups = code.split("-")
    assert len(groups) == 5
    assert all(len(group) == 4 for group in groups)


def test_codes_use_only_the_alphabet():
    for _ in range(200):
        assert set(codes.generate_code().replace("-", "")) <= set(codes.ALPHABET)


@pytest.mark.parametrize("ambiguous", list("0O1ILUV"))
def test_the_alphabet_has_no_look_alikes(ambiguous):
    assert ambiguous not in codes.ALPHABET


def test_the_alphabet_has_no_repeated_or_lowercase_characters():
    assert len(set(codes.ALPHABET)) == len(codes.ALPHABET)
    assert codes.ALPHABET == codes.ALPHABET.upper()


def test_codes_carry_at_least_80_bits_of_entropy():
    assert codes.ENTROPY_BITS >= 80
    assert codes.CODE_LENGTH == 20


def test_codes_differ_across_many_draws():
    drawn = [codes.generate_code() for _ in range(2000)]
    assert len(set(drawn)) == len(drawn)


def test_every_alphabet_character_turns_up():
    seen = set("".join(codes.generate_code() for _ in range(500)).replace("-", ""))
    assert seen == set(codes.ALPHABET)

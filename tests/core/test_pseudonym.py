"""Recipient pseudonyms for reviewers: a mask plus a keyed tag, the same for one canonical recipient."""

import pytest

from core.crypto import blind_index, recipient_index
from core.masking import PSEUDONYM_TAG_LENGTH, pseudonymous_recipient, recipient_tag

WALLET = "0x12" + "3" * 34 + "abcd"


def test_every_spelling_of_one_recipient_gets_one_tag():
    spellings = ["carol@example.com", "Carol@Example.com", "carol+gifts@example.com", " carol@EXAMPLE.com "]

    assert len({recipient_tag(email=address, wallet="") for address in spellings}) == 1
    assert recipient_tag(email="j.o.hn@googlemail.com", wallet="") == recipient_tag(email="john@gmail.com", wallet="")
    assert recipient_tag(email="", wallet=WALLET) == recipient_tag(email="", wallet=WALLET.upper().replace("0X", "0x"))


def test_different_recipients_with_one_mask_get_different_tags():
    masked_alike = ["carol@example.com", "cara@example.com", "chris@example.com", "c@example.com"]

    tags = [recipient_tag(email=address, wallet="") for address in masked_alike]

    assert len(set(tags)) == len(tags)
    assert recipient_tag(email="carol@example.com", wallet="") != recipient_tag(email="carol@example.org", wallet="")


def test_the_pseudonym_is_the_mask_and_the_tag():
    tag = recipient_tag(email="carol@example.com", wallet="")

    assert len(tag) == PSEUDONYM_TAG_LENGTH and int(tag, 16) >= 0
    assert pseudonymous_recipient(email="carol@example.com", wallet="") == f"c***@example.com · #{tag}"
    assert pseudonymous_recipient(email="", wallet=WALLET) == f"0x12…abcd · #{recipient_tag(email='', wallet=WALLET)}"


def test_the_tag_is_keyed_and_is_not_the_searchable_index(settings):
    tag = recipient_tag(email="carol@example.com", wallet="")

    assert not recipient_index(email="carol@example.com").startswith(tag)
    assert tag == blind_index("email:carol@example.com", purpose="recipient-pseudonym")[:PSEUDONYM_TAG_LENGTH]
    settings.BLIND_INDEX_KEY = "another key entirely"
    assert recipient_tag(email="carol@example.com", wallet="") != tag


@pytest.mark.parametrize("address", ["bob@localhost", "not an address"])
def test_an_address_todays_rules_refuse_still_gets_a_stable_tag(address, settings):
    settings.EMAIL_ALLOW_LOCAL_HOSTS = False

    assert recipient_tag(email=address, wallet="") == recipient_tag(email=address, wallet="")
    assert recipient_tag(email=address, wallet="") != recipient_tag(email="bob@example.com", wallet="")

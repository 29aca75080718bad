"""One canonical recipient: variants that reach one mailbox are one; look-alike and local hosts are refused."""

import pytest
from django.test import override_settings
from hypothesis import example, given
from hypothesis import strategies as st

from core.recipients import (
    DOTLESS_HOST,
    IP_HOST,
    MIXED_SCRIPTS,
    InvalidRecipient,
    canonical_email,
    canonical_recipient,
    canonical_wallet,
)

CYRILLIC_A = "\u0430"
SAME_RECIPIENT = {
    "yan@example.com": [
        "yan+a@example.com",
        "yan+b@example.com",
        "Yan+c@Example.com",
        "YAN@EXAMPLE.COM",
        " yan@example.com ",
        "\uff59\uff41\uff4e@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.\uff43\uff4f\uff4d",  # full-width
        "yan\uff0btag@example.com",  # full-width plus sign
        "yan@example\u3002com",  # ideographic full stop: a dot in IDNA
    ],
    "john@gmail.com": [
        "J.O.Hn@GoogleMail.com",
        "john+x@gmail.com",
        "j.o.h.n+shopping@gmail.com",
        "John@googlemail.com",
    ],
    "bob@xn--bcher-kva.example": [
        "bob@b\u00fccher.example",  # bücher, precomposed
        "bob@bu\u0308cher.example",  # bücher, u + combining diaeresis: NFKC composes it
        "bob@B\u00dcCHER.example",
        "bob@xn--bcher-kva.example",
        "bob@XN--BCHER-KVA.EXAMPLE",
    ],
    "ann@yahoo.com": ["ann-shopping@yahoo.com", "Ann+x@Yahoo.com"],
    # Dots count everywhere but at Gmail: other providers deliver a.nn and ann to different people.
    "a.nn@example.com": ["a.nn@example.com", "A.NN+tag@example.com"],
    # Nothing before the separator: the whole local part stays.
    "+only@example.com": ["+only@example.com"],
}


@pytest.mark.parametrize(
    ("variant", "canonical"),
    [(variant, canonical) for canonical, variants in SAME_RECIPIENT.items() for variant in variants],
)
def test_variants_of_one_mailbox_are_one_recipient(variant, canonical):
    assert canonical_email(variant) == canonical


def test_distinct_mailboxes_stay_distinct():
    addresses = ["yan@example.com", "yann@example.com", "yan@example.org", "john@gmail.com", "john@example.com"]
    assert len({canonical_email(address) for address in addresses}) == len(addresses)


REFUSED = {
    "homoglyph": (f"bob@ex{CYRILLIC_A}mple.com", MIXED_SCRIPTS),
    "homoglyph-punycode": ("bob@xn--exmple-4nf.com", MIXED_SCRIPTS),
    "homoglyph-punycode-upper": ("bob@XN--EXMPLE-4NF.COM", MIXED_SCRIPTS),
    "homoglyph-greek": ("bob@\u03bfpenai.com", MIXED_SCRIPTS),  # Greek omicron
    "localhost": ("bob@localhost", DOTLESS_HOST),
    "dotless": ("bob@intranet", DOTLESS_HOST),
    "ip-literal": ("bob@[127.0.0.1]", IP_HOST),
    "ipv6-literal": ("bob@[IPv6:::1]", IP_HOST),
    "bare-ip": ("bob@127.0.0.1", IP_HOST),
    "short-ip": ("bob@127.1", IP_HOST),
    "full-width-ip": ("bob@\uff11\uff12\uff17.0.0.1", IP_HOST),
    "local-part-only": ("bob", None),
    "no-local-part": ("@example.com", None),
    "no-domain": ("bob@", None),
    "underscore": ("bob@ex_ample.com", None),
    "empty-label": ("bob@example..com", None),
    "bad-punycode": ("bob@xn--zz.com", None),
    "root-dot": ("bob@example.com.", None),
}


@pytest.mark.parametrize(("address", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_addresses_say_why(address, message):
    with pytest.raises(InvalidRecipient) as refused:
        canonical_email(address)
    assert str(refused.value)
    if message is not None:
        assert str(refused.value) == message


@pytest.mark.parametrize(
    "address",
    [
        "bob@\u4f8b\u3048.\u30c6\u30b9\u30c8",  # 例え.テスト: Han and Hiragana, as Japanese is written
        "bob@\ud55c\uad6d.kr",  # 한국.kr
        "bob@\u043f\u0440\u0438\u043c\u0435\u0440.com",  # пример.com: one script per label
        "bob@mail2.example-1.com",  # digits and hyphens belong to no script
    ],
)
def test_single_script_and_cjk_labels_are_accepted(address):
    assert canonical_email(address).isascii()


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        ("bob@localhost", "bob@localhost"),
        ("bob@[127.0.0.1]", "bob@[127.0.0.1]"),
        ("bob@127.0.0.1", "bob@[127.0.0.1]"),
        ("Bob+x@[IPv6:0:0::1]", "bob@[::1]"),
    ],
)
def test_local_hosts_are_accepted_when_the_setting_allows_them(settings, address, canonical):
    settings.EMAIL_ALLOW_LOCAL_HOSTS = True
    assert canonical_email(address) == canonical


def test_homoglyphs_stay_refused_when_local_hosts_are_allowed(settings):
    settings.EMAIL_ALLOW_LOCAL_HOSTS = True
    with pytest.raises(InvalidRecipient):
        canonical_email("bob@xn--exmple-4nf.com")


WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"


@pytest.mark.parametrize("variant", [WALLET, WALLET.lower(), " " + WALLET.upper().replace("0X", "0x") + " "])
def test_a_wallet_is_its_lower_case_hex(variant):
    assert canonical_wallet(variant) == WALLET.lower()


@pytest.mark.parametrize(
    "wallet", ["", "0x1234", "52908400098527886E0F7030069857D2E4169EE7", WALLET + "00", "0x" + "g" * 40]
)
def test_a_malformed_wallet_is_refused(wallet):
    with pytest.raises(InvalidRecipient):
        canonical_wallet(wallet)


def test_a_recipient_names_its_kind():
    assert canonical_recipient(email="Yan+a@Example.com") == "email:yan@example.com"
    assert canonical_recipient(wallet=WALLET) == f"wallet:{WALLET.lower()}"
    for both_or_neither in ({}, {"email": "yan@example.com", "wallet": WALLET}):
        with pytest.raises(InvalidRecipient):
            canonical_recipient(**both_or_neither)


# --- Properties ---------------------------------------------------------------------------------

LOCAL_PARTS = st.text(st.characters(codec="utf-8", exclude_characters="@\x00"), min_size=1, max_size=20)
DOMAINS = st.sampled_from(
    ["example.com", "Example.COM", "gmail.com", "googlemail.com", "yahoo.com", "b\u00fccher.example", "localhost",
     "127.0.0.1", "[127.0.0.1]", "xn--exmple-4nf.com", "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"]
)  # fmt: skip


@given(local=LOCAL_PARTS, domain=DOMAINS, allow_local_hosts=st.booleans())
@example(local="\u1e9e", domain="example.com", allow_local_hosts=False)  # ẞ: case-folds to "ss"
@example(local="\u0345", domain="example.com", allow_local_hosts=False)  # folds to a letter NFKC changes
def test_canonical_is_idempotent(local, domain, allow_local_hosts):
    with override_settings(EMAIL_ALLOW_LOCAL_HOSTS=allow_local_hosts):
        try:
            once = canonical_email(f"{local}@{domain}")
        except InvalidRecipient:
            return
        assert canonical_email(once) == once
    assert once == once.strip() and once.rpartition("@")[2].isascii()


@given(local=st.from_regex(r"[a-z0-9.]{1,10}", fullmatch=True), tag=st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True))
def test_a_tag_never_makes_another_recipient(local, tag):
    if local.startswith("+") or not local.strip("."):
        return
    assert canonical_email(f"{local}+{tag}@example.com") == canonical_email(f"{local}@example.com")

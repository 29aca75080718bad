"""One canonical form of a recipient, for every rule, quota, history and blind index.

Two addresses that reach the same mailbox must count as one recipient, or a
fan-in rule is dodged with `yan+a@`, `yan+b@` and `Yan+c@Example.com`. For fraud
grouping, counting two mailboxes as one (over-grouping) is the safe side; the
gift is still delivered to the address as typed.

An email address becomes canonical in these steps:

1. Unicode NFKC (full-width letters and digits become ASCII ones), surrounding whitespace removed.
2. The domain: IDNA 2008 with the UTS 46 mapping, to its ASCII form (A-label,
   punycode), lower case; `bücher.example` and `xn--bcher-kva.example` are one.
3. The local part: case-folded; sub-addressing (RFC 5233, `name+tag`) stripped
   for every domain.
4. Provider rules, for the domains in PROVIDERS:
   - gmail.com, googlemail.com: dots in the local part are ignored, and
     googlemail.com is gmail.com (`J.O.Hn@GoogleMail.com` is `john@gmail.com`);
   - yahoo.com: `-` also separates a disposable-address keyword (`base-keyword`).

Refused (InvalidRecipient, whose message is the API's field error): an address
without a local part or a domain; a host without a dot (`localhost`); an IP
address, bracketed or bare (`bob@[127.0.0.1]`, `bob@127.0.0.1`); a domain that is
not a valid IDNA name; a domain label that mixes scripts, as look-alike domains
do (`example` written with a Cyrillic `a`, U+0430, also when given as `xn--exmple-4nf`).
With settings.EMAIL_ALLOW_LOCAL_HOSTS (development only) dotless hosts and IP
addresses are accepted; an IP address is then written `[127.0.0.1]`.

A wallet's canonical form is its lower-case `0x` hex address (the API checks the
EIP-55 checksum before this: gifting.wallets.normalize_wallet).
"""

import ipaddress
import re
import unicodedata
from dataclasses import dataclass

import idna
from django.conf import settings
from django.core.exceptions import ValidationError


class InvalidRecipient(ValueError):
    """The address cannot be a recipient (the message says why, for the API's field error)."""


@dataclass(frozen=True)
class Provider:
    """How a mail provider reads local parts: what ends the mailbox's name, whether dots count."""

    domain: str  # the domain its addresses are one with
    tag_separators: str = "+"  # RFC 5233 sub-addressing, stripped for every domain
    ignores_dots: bool = False


# Providers known to deliver more variants of a local part to one mailbox (documented in the README).
PROVIDERS = {
    "gmail.com": Provider("gmail.com", ignores_dots=True),
    "googlemail.com": Provider("gmail.com", ignores_dots=True),
    "yahoo.com": Provider("yahoo.com", tag_separators="+-"),  # disposable addresses: base-keyword
}

# Scripts that UTS 39's "highly restrictive" level lets share one label: Japanese,
# Chinese and Korean writing mixes them with each other and with Latin.
SCRIPT_MIXES_ALLOWED = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# The first word of a letter's Unicode name is its script, but for these.
_SCRIPT_OF_NAME = {"CJK": "HAN", "IDEOGRAPHIC": "HAN"}
# Letters shared by several scripts (Unicode's "Common"): they mix with any.
_COMMON_NAMES = frozenset({"MODIFIER", "KATAKANA-HIRAGANA"})

_WALLET = re.compile(r"0x[0-9a-f]{40}")

NO_LOCAL_OR_DOMAIN = "Enter an email address with a name and a domain, e.g. name@example.com."
IP_HOST = "An IP address is not accepted as an email domain: use a domain name, e.g. example.com."
DOTLESS_HOST = "The email domain must be a full domain name with a dot, e.g. example.com."
INVALID_DOMAIN = "The email domain is not a valid domain name."
MIXED_SCRIPTS = (
    "The email domain mixes letters of different scripts (e.g. Latin and Cyrillic) in one part, "
    "as look-alike domains do."
)
INVALID_WALLET = "A wallet address is 0x followed by 40 hexadecimal digits."


def canonical_email(address: str) -> str:
    """The canonical form of an email address; raises InvalidRecipient for one we refuse."""
    local, at, host = _nfkc(address).strip().rpartition("@")
    if not at or not local or not host:
        raise InvalidRecipient(NO_LOCAL_OR_DOMAIN)
    domain = _canonical_domain(host)
    provider = PROVIDERS.get(domain, Provider(domain))
    return f"{_canonical_local(local, provider)}@{provider.domain}"


def validate_recipient_email(address: str) -> None:
    """A model validator: the address is one canonical_email accepts (the API checks it before, with its message)."""
    try:
        canonical_email(address)
    except InvalidRecipient as exc:
        raise ValidationError(str(exc), code="invalid_recipient") from None


def canonical_wallet(address: str) -> str:
    """The canonical form of a wallet address (lower-case hex); raises InvalidRecipient."""
    wallet = _nfkc(address).strip().lower()
    if not _WALLET.fullmatch(wallet):
        raise InvalidRecipient(INVALID_WALLET)
    return wallet


def canonical_recipient(*, email: str = "", wallet: str = "") -> str:
    """`email:<canonical>` or `wallet:<canonical>`: what blind indexes and fraud history key on."""
    if bool(email) == bool(wallet):
        raise InvalidRecipient("Give exactly one of an email address or a wallet address.")
    return f"email:{canonical_email(email)}" if email else f"wallet:{canonical_wallet(wallet)}"


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _canonical_local(local: str, provider: Provider) -> str:
    # Case-folding can leave text that NFKC changes again: normalised after, so that
    # canonical_email(canonical_email(x)) == canonical_email(x).
    local = _nfkc(local.casefold())
    for separator in provider.tag_separators:
        # `name` of `name+tag`; the whole part when nothing comes before the separator.
        local = local.partition(separator)[0] or local
    if provider.ignores_dots:
        local = local.replace(".", "") or local
    return local


def _canonical_domain(host: str) -> str:
    """The lower-case A-label form of a domain, or `[ip]` for an IP address when they are allowed."""
    if host.startswith("[") and host.endswith("]"):
        literal = host[1:-1]
        return _ip_literal(literal[5:] if literal[:5].lower() == "ipv6:" else literal)  # RFC 5321's "[IPv6:…]"
    try:
        domain = idna.encode(host, uts46=True).decode("ascii").lower()
        unicode_domain = idna.decode(domain)
    except UnicodeError as exc:  # idna.IDNAError is one
        raise InvalidRecipient(INVALID_DOMAIN) from exc
    if domain.endswith("."):  # a root-anchored name ("example.com."): no address is written so
        raise InvalidRecipient(INVALID_DOMAIN)
    if domain.rpartition(".")[2].isdigit():  # no top-level domain is numeric: 127.0.0.1, or 127.1
        return _ip_literal(domain)
    if "." not in domain and not settings.EMAIL_ALLOW_LOCAL_HOSTS:
        raise InvalidRecipient(DOTLESS_HOST)
    for label in unicode_domain.split("."):
        if _mixes_scripts(label):
            raise InvalidRecipient(MIXED_SCRIPTS)
    return domain


def _ip_literal(text: str) -> str:
    if not settings.EMAIL_ALLOW_LOCAL_HOSTS:
        raise InvalidRecipient(IP_HOST)
    try:
        return f"[{ipaddress.ip_address(text).compressed}]"
    except ValueError as exc:
        raise InvalidRecipient(INVALID_DOMAIN) from exc


def _script(char: str) -> str | None:
    """The script of a letter, from its Unicode name; None for digits, hyphens, marks and shared letters.

    The standard library has no script property; a letter's name starts with its
    script ("CYRILLIC SMALL LETTER A", "GREEK SMALL LETTER ALPHA"), which is what
    look-alike detection needs.
    """
    if not unicodedata.category(char).startswith("L"):
        return None
    first_word = unicodedata.name(char, "").partition(" ")[0]
    if not first_word or first_word in _COMMON_NAMES:
        return None
    return _SCRIPT_OF_NAME.get(first_word, first_word)


def _mixes_scripts(label: str) -> bool:
    scripts = {script for script in map(_script, label) if script is not None}
    return len(scripts) > 1 and not any(scripts <= allowed for allowed in SCRIPT_MIXES_ALLOWED)

"""Encryption at rest and blind indexes: the fields that store personal data and codes, and their keyed hashes.

Why our own small fields rather than a library: the django-fernet-fields family
(django-fernet-fields, django-encrypted-model-fields, …) is unmaintained or thinly
maintained, pins old Django versions, and none of them marks which key encrypted a
value, which a resumable rotation needs. What we need is little: Fernet from
`cryptography` (AES-128-CBC + HMAC-SHA256, authenticated; maintained by the PyCA),
a key id in front of each token, and two field classes. That fits here in one read.

Stored form: `<key id>$<Fernet token>`, where the key id is a short fingerprint of
the key that encrypted it. So `~Q(field__startswith=current_prefix())` finds the
rows a rotation has not reached yet (manage.py rotate_encryption_keys). Empty
values are stored as "" (text) or NULL (JSON), not encrypted, so constraints such
as "exactly one recipient" still mean something; that a value is empty is the
only thing they reveal. Encrypted columns cannot be searched or compared: equality
lookups go through a blind index, an HMAC-SHA256 of the value's canonical form
under a key derived from BLIND_INDEX_KEY per purpose, so one column's hashes
never match another's.

Keys come from settings.FIELD_ENCRYPTION_KEYS (newest first): the first encrypts,
every key decrypts.
"""

import functools
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models import Q
from django.db.models.lookups import Exact, IsNull, StartsWith

from core.recipients import canonical_recipient

SEPARATOR = "$"  # never in a Fernet token (URL-safe base64) nor in a key id (hex)
KEY_ID_LENGTH = 8  # hex digits: enough to tell a handful of keys apart, too few to say anything about one
_KEY_ID_PREFIX = re.compile(rf"[0-9a-f]{{{KEY_ID_LENGTH}}}{re.escape(SEPARATOR)}")


class DecryptionError(ValueError):
    """A stored value that cannot be decrypted: altered, corrupt, or under a key no longer configured."""


def key_id(key: str) -> str:
    """A short, public fingerprint of a Fernet key: which key encrypted a value."""
    return hashlib.sha256(b"field-encryption-key-id:" + key.encode()).hexdigest()[:KEY_ID_LENGTH]


@dataclass(frozen=True)
class _Keyring:
    multi: MultiFernet
    newest_id: str
    ids: frozenset[str]


@functools.lru_cache(maxsize=8)
def _keyring(keys: tuple[str, ...]) -> _Keyring:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must name at least one Fernet key (newest first).")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except ValueError:
            # Never the key itself in a message: it is the secret.
            raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS: key {position} is not a Fernet key.") from None
    return _Keyring(multi=MultiFernet(fernets), newest_id=key_id(keys[0]), ids=frozenset(map(key_id, keys)))


def _current_keyring() -> _Keyring:
    # Read on every call, not at import: tests and the rotation command change the setting.
    return _keyring(tuple(settings.FIELD_ENCRYPTION_KEYS))


def current_prefix() -> str:
    """What every value encrypted under the newest key starts with."""
    return _current_keyring().newest_id + SEPARATOR


def encrypt(plaintext: str) -> str:
    """`<newest key id>$<Fernet token>` for `plaintext`."""
    keyring = _current_keyring()
    return keyring.newest_id + SEPARATOR + keyring.multi.encrypt(plaintext.encode()).decode()


def decrypt(stored: str) -> str:
    """The plaintext of an `encrypt()` result, under any configured key; DecryptionError otherwise."""
    keyring = _current_keyring()
    stored_id, separator, token = stored.partition(SEPARATOR)
    if not separator:
        raise DecryptionError("The stored value is not an encrypted value (no key id).")
    try:
        return keyring.multi.decrypt(token.encode()).decode()
    except InvalidToken:
        if stored_id not in keyring.ids:
            raise DecryptionError(
                f"The value was encrypted under key {stored_id}, which is not in FIELD_ENCRYPTION_KEYS "
                "(was it removed before manage.py rotate_encryption_keys finished?)."
            ) from None
        raise DecryptionError(f"The value under key {stored_id} was altered or is corrupt.") from None


# --- Fields ---------------------------------------------------------------------------------------------


class EncryptedLookupError(TypeError):
    """A query compared an encrypted column with a value: it can never match. Use the blind index."""


class _KeyIdPrefix(StartsWith):
    """`field__startswith="<key id>$"`, the rotation's query; any other prefix would be compared with ciphertext."""

    def get_prep_lookup(self):
        if not (isinstance(self.rhs, str) and _KEY_ID_PREFIX.fullmatch(self.rhs)):
            raise EncryptedLookupError(f"{self.lhs.output_field.name} is encrypted: only its key id can be matched.")
        return super().get_prep_lookup()


class _EmptyOnlyExact(Exact):
    """`field=""` (or None) works, as constraints need; any other value would be compared with ciphertext."""

    def get_prep_lookup(self):
        if self.rhs not in ("", None) and not hasattr(self.rhs, "resolve_expression"):
            raise EncryptedLookupError(
                f"{self.lhs.output_field.name} is encrypted: look it up by its blind index, not by value."
            )
        return super().get_prep_lookup()


class EncryptedField(models.TextField):
    """Base of the encrypted fields: a text column holding `<key id>$<token>`, empty values stored as is.

    Lookups: `isnull`, `exact` against the empty value, and `startswith` a key id
    (what a rotation looks for) only: anything else would be compared with ciphertext.
    """

    LOOKUPS = {"exact": _EmptyOnlyExact, "startswith": _KeyIdPrefix, "isnull": IsNull}

    def _serialize(self, value: Any) -> str:
        raise NotImplementedError

    def _deserialize(self, text: str) -> Any:
        raise NotImplementedError

    def _is_empty(self, value: Any) -> bool:
        raise NotImplementedError

    def get_prep_value(self, value: Any) -> Any:
        if self._is_empty(value):
            return value
        return encrypt(self._serialize(value))

    def from_db_value(self, value: Any, expression, connection) -> Any:
        if value is None or value == "":
            return value
        return self._deserialize(decrypt(value))

    def get_lookup(self, lookup_name: str):
        return self.LOOKUPS.get(lookup_name)  # None: Django answers "Unsupported lookup"

    def get_transform(self, lookup_name: str):
        return None

    def stale_q(self) -> Q:
        """Rows whose value in this column is not yet under the newest key."""
        under_newest = Q(**{f"{self.name}__startswith": current_prefix()})
        return ~Q(**{f"{self.name}__isnull": True}) & ~Q(**{self.name: ""}) & ~under_newest


class EncryptedTextField(EncryptedField):
    """Text encrypted at rest. `max_length` is checked by full_clean(), on the plaintext."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.max_length is not None:
            self.validators.append(MaxLengthValidator(self.max_length))  # as CharField does

    def _serialize(self, value: Any) -> str:
        return str(value)

    def _deserialize(self, text: str) -> str:
        return text

    def _is_empty(self, value: Any) -> bool:
        return value is None or value == ""


class EncryptedJSONField(EncryptedField):
    """A JSON value encrypted at rest (as its JSON text); None is stored as NULL."""

    def _serialize(self, value: Any) -> str:
        return json.dumps(value)

    def _deserialize(self, text: str) -> Any:
        return json.loads(text)

    def _is_empty(self, value: Any) -> bool:
        return value is None

    def to_python(self, value: Any) -> Any:
        return value


# --- Blind indexes and derived keys -------------------------------------------------------------------


def derived_key(label: str) -> bytes:
    """A key for one purpose, derived from BLIND_INDEX_KEY: HMAC-SHA256(BLIND_INDEX_KEY, label).

    Each label gives an independent key, so a hash made for one purpose (a blind
    index, the audit chain) can never be matched against another's.
    """
    return hmac.new(settings.BLIND_INDEX_KEY.encode(), label.encode(), hashlib.sha256).digest()


def blind_index(value: str, *, purpose: str) -> str:
    """The keyed hash (hex HMAC-SHA256) that stands in for `value` in equality lookups of `purpose`."""
    return hmac.new(derived_key(f"blind-index:{purpose}"), value.encode(), hashlib.sha256).hexdigest()


def recipient_index(*, email: str = "", wallet: str = "") -> str:
    """The blind index of a recipient's canonical form; raises InvalidRecipient for one the rules refuse."""
    return blind_index(canonical_recipient(email=email, wallet=wallet), purpose="recipient")

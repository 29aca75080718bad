"""core.crypto: Fernet encryption with key ids, several keys, tamper refusal, keyed blind indexes; the key settings."""

import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError, ImproperlyConfigured

from core import crypto
from gifting.models import Gift
from tests.factories import gift_row

ROOT = Path(__file__).resolve().parents[2]
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


@pytest.fixture
def key_a(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]


def test_a_value_round_trips_and_is_stored_as_key_id_and_token(key_a):
    stored = crypto.encrypt("bob@example.com")

    assert crypto.decrypt(stored) == "bob@example.com"
    key_id, separator, token = stored.partition("$")
    assert (key_id, separator) == (crypto.key_id(KEY_A), "$")
    assert "bob" not in stored and Fernet(KEY_A).decrypt(token.encode()) == b"bob@example.com"
    assert crypto.encrypt("bob@example.com") != stored  # a fresh IV every time


def test_unicode_round_trips(key_a):
    assert crypto.decrypt(crypto.encrypt("Zoë 🎁 — bon anniversaire")) == "Zoë 🎁 — bon anniversaire"


def test_the_first_key_encrypts_and_every_key_decrypts(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    under_a = crypto.encrypt("old secret")

    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    under_b = crypto.encrypt("new secret")

    assert crypto.decrypt(under_a) == "old secret"
    assert crypto.decrypt(under_b) == "new secret"
    assert under_b.startswith(crypto.current_prefix()) and crypto.current_prefix() == crypto.key_id(KEY_B) + "$"
    assert not under_a.startswith(crypto.current_prefix())


def test_a_value_under_a_removed_key_is_refused_naming_that_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    under_a = crypto.encrypt("old secret")
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]

    with pytest.raises(crypto.DecryptionError, match=f"key {crypto.key_id(KEY_A)}, which is not in FIELD_ENCRYPTION"):
        crypto.decrypt(under_a)


@pytest.mark.parametrize("position", [10, 40, -5])
def test_a_tampered_ciphertext_is_refused_with_a_clear_error(key_a, position):
    stored = crypto.encrypt("bob@example.com")
    flipped = "A" if stored[position] != "A" else "B"
    tampered = stored[:position] + flipped + stored[position + 1 :]

    with pytest.raises(crypto.DecryptionError, match="was altered or is corrupt"):
        crypto.decrypt(tampered)


def test_a_plaintext_where_a_ciphertext_belongs_is_refused(key_a):
    with pytest.raises(crypto.DecryptionError, match="not an encrypted value"):
        crypto.decrypt("bob@example.com")


def test_a_malformed_key_is_refused_by_position_never_echoed(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A, "not-a-fernet-key"]

    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS: key 2 is not a Fernet key") as refused:
        crypto.encrypt("x")
    assert "not-a-fernet-key" not in str(refused.value)


# --- Blind indexes -------------------------------------------------------------------------------------


def test_a_blind_index_is_stable_and_hides_its_value(settings):
    settings.BLIND_INDEX_KEY = "k" * 40
    index = crypto.blind_index("email:bob@example.com", purpose="recipient")

    assert index == crypto.blind_index("email:bob@example.com", purpose="recipient")
    assert len(index) == 64 and "bob" not in index
    assert index != hashlib.sha256(b"email:bob@example.com").hexdigest()  # keyed, not a plain hash


def test_a_blind_index_depends_on_the_key(settings):
    settings.BLIND_INDEX_KEY = "k" * 40
    under_k = crypto.blind_index("email:bob@example.com", purpose="recipient")
    settings.BLIND_INDEX_KEY = "j" * 40

    assert crypto.blind_index("email:bob@example.com", purpose="recipient") != under_k


def test_each_purpose_has_its_own_subkey(settings):
    """One column's hashes cannot be matched against another's, nor against other derived keys."""
    assert crypto.blind_index("X", purpose="recipient") != crypto.blind_index("X", purpose="voucher-code")
    assert crypto.derived_key("audit-chain") != crypto.derived_key("blind-index:recipient")


def test_derived_key_is_hmac_of_the_label_under_blind_index_key(settings):
    """The contract other code relies on (the audit chain derives its key with the label "audit-chain")."""
    settings.BLIND_INDEX_KEY = "k" * 40
    expected = hmac.new(b"k" * 40, b"audit-chain", hashlib.sha256).digest()

    assert crypto.derived_key("audit-chain") == expected


def test_the_recipient_index_keys_on_the_canonical_recipient():
    assert crypto.recipient_index(email="Bob@Example.com") == crypto.recipient_index(email="bob@example.com")
    assert crypto.recipient_index(email="bob@example.com") != crypto.recipient_index(email="rob@example.com")
    wallet = "0x52908400098527886E0F7030069857D2E4169EE7"
    assert crypto.recipient_index(wallet=wallet) == crypto.recipient_index(wallet=wallet.lower())


# --- The fields ---------------------------------------------------------------------------------------


def test_an_encrypted_column_cannot_be_compared_with_a_value(user):
    """It would compare with a fresh ciphertext and silently match nothing: refused, pointing at the index."""
    gift_row(user, recipient_email="bob@example.com")

    with pytest.raises(crypto.EncryptedLookupError, match="recipient_email is encrypted: look it up by its blind"):
        Gift.objects.filter(recipient_email="bob@example.com").exists()
    with pytest.raises(crypto.EncryptedLookupError, match="only its key id can be matched"):
        Gift.objects.filter(message__startswith="Happy").exists()
    with pytest.raises(FieldError):
        Gift.objects.filter(recipient_email__iexact="bob@example.com").exists()
    assert Gift.objects.filter(recipient_email__startswith=crypto.current_prefix()).count() == 1
    assert Gift.objects.filter(recipient_wallet="").count() == 1  # the empty value is stored as is


def test_encrypted_fields_still_check_length_and_format(user):
    from django.core.exceptions import ValidationError

    gift = Gift(sender=user, recipient_email="not an address", amount=5, currency="EUR", message="x" * 501)
    with pytest.raises(ValidationError) as invalid:
        gift.full_clean(exclude=["next_attempt_at"])
    assert set(invalid.value.message_dict) >= {"recipient_email", "message"}


# --- The settings ---------------------------------------------------------------------------------------

PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "s" * 50,
    "DJANGO_ALLOWED_HOSTS": "gifts.example.com",
    "DATABASE_URL": "postgres://gifts@127.0.0.1:5432/gifts",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "FIELD_ENCRYPTION_KEYS": f"{KEY_B},{KEY_A}",
    "BLIND_INDEX_KEY": "b" * 43,
}


def _import_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FIELD_", "BLIND_"))}
    return subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_settings_load_with_real_keys():
    result = _import_settings(**PRODUCTION)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"FIELD_ENCRYPTION_KEYS": ""}, "FIELD_ENCRYPTION_KEYS must name at least one Fernet key"),
        ({"FIELD_ENCRYPTION_KEYS": None}, "FIELD_ENCRYPTION_KEYS must be set when DJANGO_DEBUG is off"),
        ({"BLIND_INDEX_KEY": None}, "BLIND_INDEX_KEY must be set when DJANGO_DEBUG is off"),
        ({"FIELD_ENCRYPTION_KEYS": f"{KEY_B},tiny"}, "FIELD_ENCRYPTION_KEYS: key 2 is not a Fernet key"),
        ({"BLIND_INDEX_KEY": "short"}, "BLIND_INDEX_KEY must be at least 32 characters"),
        ({"BLIND_INDEX_KEY": KEY_A}, "BLIND_INDEX_KEY must differ from every FIELD_ENCRYPTION_KEYS key"),
    ],
    ids=["empty-keys", "no-keys", "no-index-key", "malformed-key", "short-index-key", "index-key-reused"],
)
def test_production_refuses_missing_dev_or_malformed_keys_naming_the_variable(changes, message):
    env = {**PRODUCTION, **changes}
    result = _import_settings(**{name: value for name, value in env.items() if value is not None})

    assert result.returncode != 0
    assert message in result.stderr
    assert KEY_B not in result.stderr  # a key is never echoed


def test_development_keeps_its_defaults():
    assert _import_settings(DJANGO_DEBUG="true").returncode == 0

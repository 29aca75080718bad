"""The proof-of-work challenge (ALTCHA, self-hosted): make one, check a solution, refuse a replay.

A challenge is SHA-256(salt + number) for a secret number up to CHALLENGE_MAX_NUMBER,
signed with an HMAC so that the server keeps no state until a solution comes back. The
salt carries the expiry (CHALLENGE_TTL), which the signature covers. The client tries
numbers until the hash matches (abuse/static/abuse/challenge.js in the admin; any
ALTCHA solver for API clients) and sends back the base64 JSON payload ALTCHA's widget
produces. Each accepted challenge is remembered in the cache until it expires, so one
solution buys one attempt.

We use the library's v1 format ({algorithm, challenge, salt, signature, maxnumber}):
what ALTCHA's widget and solvers in every language understand, and small enough to
solve with the browser's own SubtleCrypto.
"""

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

import altcha
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from core.crypto import derived_key

ALGORITHM = "SHA-256"
HEADER = "X-Challenge-Solution"  # the API's header
FORM_FIELD = "altcha"  # the admin login form's field, as ALTCHA's widget names it
MAX_PAYLOAD_LENGTH = 2048  # a genuine payload is a few hundred characters
_USED_PREFIX = "abuse:challenge-used:"


def hmac_key() -> bytes:
    """CHALLENGE_HMAC_KEY, or by default a key derived from BLIND_INDEX_KEY: no new secret to manage."""
    return settings.CHALLENGE_HMAC_KEY.encode() if settings.CHALLENGE_HMAC_KEY else derived_key("altcha")


def new_challenge() -> dict:
    """A fresh challenge as the client receives it: {algorithm, challenge, salt, signature, maxnumber}."""
    challenge = altcha.create_challenge_v1(
        algorithm=ALGORITHM,
        max_number=settings.CHALLENGE_MAX_NUMBER,
        hmac_key=hmac_key(),
        expires=timezone.now() + timedelta(seconds=settings.CHALLENGE_TTL),
    )
    return {
        "algorithm": challenge.algorithm,
        "challenge": challenge.challenge,
        "salt": challenge.salt,
        "signature": challenge.signature,
        "maxnumber": challenge.max_number,
    }


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str = ""  # why not, in words for the client


def check_solution(payload: str | None) -> Verdict:
    """Accept a solution once: a valid signature, the right number, not expired, not seen before."""
    if not payload:
        return Verdict(False, "This request needs a solved challenge.")
    if len(payload) > MAX_PAYLOAD_LENGTH:
        return Verdict(False, "The challenge solution is not a valid payload.")
    try:
        data = json.loads(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return Verdict(False, "The challenge solution is not a valid payload.")
    fields = ("algorithm", "challenge", "number", "salt", "signature")
    if not isinstance(data, dict) or not all(isinstance(data.get(name), str | int) for name in fields):
        return Verdict(False, "The challenge solution is not a valid payload.")
    if data["algorithm"] != ALGORITHM or not isinstance(data["number"], int):
        return Verdict(False, "The challenge solution is not a valid payload.")
    if "expires=" not in str(data["salt"]):
        # Every challenge we make expires; one without an expiry was not made by us.
        return Verdict(False, "The challenge solution is wrong.")
    try:
        # Checks the expiry in the salt, the hash of salt + number, and the HMAC signature.
        valid, error = altcha.verify_solution_v1(data, hmac_key(), check_expires=True)
    except (TypeError, ValueError):
        return Verdict(False, "The challenge solution is not a valid payload.")
    if error and "expired" in error:
        return Verdict(False, "The challenge expired: solve the new one.")
    if not valid:
        return Verdict(False, "The challenge solution is wrong.")
    # Remember the challenge until it would have expired anyway; add() is atomic (SET NX in Redis).
    used_key = _USED_PREFIX + hashlib.sha256(str(data["signature"]).encode()).hexdigest()
    if not cache.add(used_key, 1, timeout=settings.CHALLENGE_TTL + 60):
        return Verdict(False, "This challenge was already used: solve the new one.")
    return Verdict(True)

"""Request-pattern analysis: what one request adds to the rolling windows, and which patterns it completes.

Four patterns, each a threshold over ABUSE_WINDOW_SECONDS (settings ABUSE_*):
- error_sweep: many 400/401/404 answers, making up a large share of the client's requests
  (per IP, and per user when the request carried one);
- id_enumeration: many distinct ids answered 404 on GET /api/v1/gifts/{id}/ (per IP and per user);
- credential_spraying: many distinct usernames failing to log in from one IP (token endpoint
  and admin login);
- recipient_burst: one user gifting to many distinct recipients (by the recipient's blind
  index, never the address).
"""

from dataclasses import dataclass

from django.conf import settings

from abuse import windows
from abuse.models import SubjectKind

ERROR_STATUSES = frozenset({400, 401, 404})
ERROR_SWEEP = "error_sweep"
ID_ENUMERATION = "id_enumeration"
CREDENTIAL_SPRAYING = "credential_spraying"
RECIPIENT_BURST = "recipient_burst"


@dataclass(frozen=True)
class Observation:
    """One answered request, as the access log sees it, plus what the login and gift views revealed."""

    ip: str
    user_id: int | None
    method: str
    url_name: str | None
    status: int
    gift_id: str | None = None  # the id asked for on GET /api/v1/gifts/{id}/
    failed_username: str | None = None  # a login that failed, for spraying
    recipient_index: str | None = None  # the blind index of a gift's recipient


@dataclass(frozen=True)
class Detection:
    pattern: str
    subject_kind: str
    subject: str
    reason: str  # the pattern and its figures, for the audit log and the Block row
    windows: dict[str, int]  # the windows that produced it (name → seconds), emptied afterwards


def _subjects(observation: Observation) -> list[tuple[str, str]]:
    subjects = [(SubjectKind.IP.value, observation.ip)]
    if observation.user_id is not None:
        subjects.append((SubjectKind.USER.value, str(observation.user_id)))
    return subjects


def analyse(observation: Observation) -> list[Detection]:
    """Count the request into its windows (one round trip) and return the patterns it completes."""
    window = settings.ABUSE_WINDOW_SECONDS
    is_error = observation.status in ERROR_STATUSES
    batch = windows.Batch()
    for kind, subject in _subjects(observation):
        batch.counters[f"requests:{kind}:{subject}"] = window
        if is_error:
            batch.counters[f"errors:{kind}:{subject}"] = window
        if observation.gift_id is not None and observation.status == 404 and observation.method == "GET":
            batch.distinct[f"ids:{kind}:{subject}"] = (windows.member(observation.gift_id), window)
    if observation.failed_username is not None:
        batch.distinct[f"usernames:ip:{observation.ip}"] = (windows.member(observation.failed_username), window)
    if observation.recipient_index and observation.user_id is not None:
        batch.distinct[f"recipients:user:{observation.user_id}"] = (observation.recipient_index[:16], window)
    figures = windows.apply(batch)

    detections = []
    for kind, subject in _subjects(observation):
        errors = figures.get(f"errors:{kind}:{subject}")
        requests = figures[f"requests:{kind}:{subject}"]
        swept = errors is not None and errors >= settings.ABUSE_ERROR_COUNT
        if swept and errors / requests >= settings.ABUSE_ERROR_RATIO:
            detections.append(
                Detection(
                    pattern=ERROR_SWEEP,
                    subject_kind=kind,
                    subject=subject,
                    reason=f"{ERROR_SWEEP}: {errors:.0f} of {requests:.0f} answers were 400/401/404 in {window} s",
                    windows={f"errors:{kind}:{subject}": window, f"requests:{kind}:{subject}": window},
                )
            )
        ids = figures.get(f"ids:{kind}:{subject}")
        if ids is not None and ids >= settings.ABUSE_ENUMERATION_IDS:
            detections.append(
                Detection(
                    pattern=ID_ENUMERATION,
                    subject_kind=kind,
                    subject=subject,
                    reason=f"{ID_ENUMERATION}: {ids:.0f} distinct gift ids answered 404 in {window} s",
                    windows={f"ids:{kind}:{subject}": window},
                )
            )
    usernames = figures.get(f"usernames:ip:{observation.ip}")
    if usernames is not None and usernames >= settings.ABUSE_SPRAY_USERNAMES:
        detections.append(
            Detection(
                pattern=CREDENTIAL_SPRAYING,
                subject_kind=SubjectKind.IP.value,
                subject=observation.ip,
                reason=f"{CREDENTIAL_SPRAYING}: {usernames:.0f} distinct usernames failed to log in in {window} s",
                windows={f"usernames:ip:{observation.ip}": window},
            )
        )
    recipients = figures.get(f"recipients:user:{observation.user_id}")
    if recipients is not None and recipients >= settings.ABUSE_RECIPIENT_BURST:
        detections.append(
            Detection(
                pattern=RECIPIENT_BURST,
                subject_kind=SubjectKind.USER.value,
                subject=str(observation.user_id),
                reason=f"{RECIPIENT_BURST}: gifts to {recipients:.0f} distinct recipients in {window} s",
                windows={f"recipients:user:{observation.user_id}": window},
            )
        )
    return detections

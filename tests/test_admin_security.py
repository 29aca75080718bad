"""The admin's login (per-IP rate limit, lockouts, TOTP), its audit log, and full recipient addresses."""

import json
import re
import time
from decimal import Decimal
from types import SimpleNamespace

import django_ratelimit.core
import pytest
from django.contrib.auth.models import Permission
from django.test import Client, RequestFactory
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.admin_site import axes_lockout_response
from audit.models import AuditEntry
from fraud.models import RiskAssessment
from gifting.models import GiftEvent
from gifting.services.intake import gift_create
from tests.factories import gift_row

ADMIN_LOGIN = "/admin/login/"
ADMIN_LOGOUT = "/admin/logout/"
PASSWORD = "correct-horse-battery"  # make_user's default
ADDRESS = "Jane.Doe+gifts@example.org"
WALLET = "0x12" + "3" * 34 + "abcd"


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> SimpleNamespace:
    """django-ratelimit's clock, stopped so that no window ends mid-test."""
    frozen = SimpleNamespace(now=float(int(time.time())))
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: frozen.now))
    return frozen


def log_in(client: Client, username: str, password: str = PASSWORD, **extra):
    return client.post(ADMIN_LOGIN, {"username": username, "password": password, "next": "/admin/"}, **extra)


def kinds() -> list[str]:
    return list(AuditEntry.objects.order_by("id").values_list("kind", flat=True))


# --- Rate limit ---------------------------------------------------------------------------


def test_admin_logins_are_rate_limited_per_address_whatever_the_username(settings, make_user, client):
    settings.RATELIMIT_ADMIN_LOGIN_IP = "3/m"
    make_user(username="admin", is_staff=True)

    answers = [log_in(client, f"guess{n}", "wrong").status_code for n in range(3)]
    refused = log_in(client, "admin")  # even the right password, from this address

    assert answers == [200, 200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["Content-Type"].startswith("text/html")
    assert b"Too many login attempts from your address" in refused.content
    assert "_auth_user_id" not in client.session
    assert log_in(client, "admin", REMOTE_ADDR="192.0.2.7").status_code == 302  # another address, its own limit


def test_the_login_page_itself_is_not_counted(settings, make_user, client):
    settings.RATELIMIT_ADMIN_LOGIN_IP = "2/m"
    make_user(username="admin", is_staff=True)

    for _ in range(5):
        assert client.get(ADMIN_LOGIN).status_code == 200
    assert log_in(client, "admin").status_code == 302


def test_the_limit_resets_with_its_window(settings, make_user, client, clock):
    settings.RATELIMIT_ADMIN_LOGIN_IP = "1/m"
    make_user(username="admin", is_staff=True)
    log_in(client, "admin", "wrong")
    retry_after = int(log_in(client, "admin").get("Retry-After"))

    clock.now += retry_after

    assert log_in(client, "admin").status_code == 302


def test_the_first_refusal_of_a_window_is_audit_logged_not_every_one(settings, db, client):
    settings.RATELIMIT_ADMIN_LOGIN_IP = "1/m"
    log_in(client, "mallory", "guess")

    for _ in range(3):
        assert log_in(client, "mallory", "guess").status_code == 429

    [entry] = AuditEntry.objects.filter(kind="admin_login_rate_limited")
    assert (entry.actor, entry.actor_label, entry.subject, entry.ip) == (None, "anonymous", "mallory", "127.0.0.1")
    assert 1 <= entry.details["retry_after"] <= 60


def test_a_broken_shared_cache_refuses_admin_logins_with_503(settings, make_user, client):
    make_user(username="admin", is_staff=True)
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }

    response = log_in(client, "admin")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"


# --- django-axes lockouts -------------------------------------------------------------------


def test_an_admin_lockout_is_a_429_with_retry_after_and_audit_logged(settings, make_user, client):
    settings.AXES_FAILURE_LIMIT = 2
    make_user(username="admin", is_staff=True)

    first = log_in(client, "admin", "wrong")
    locked = log_in(client, "admin", "wrong")  # the failure that reaches the limit
    still = log_in(client, "admin")  # the right password, while locked out

    assert first.status_code == 200
    for response in (locked, still):
        assert response.status_code == 429
        assert int(response["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
        assert response["Content-Type"].startswith("text/html")
        assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session
    assert kinds() == [
        "admin_login_failed",
        "admin_login_failed",  # reaching the limit
        "admin_login_locked_out",
        "admin_login_failed",  # the right password, refused
        "admin_login_locked_out",
    ]
    lockout = AuditEntry.objects.filter(kind="admin_login_locked_out").first()
    assert (lockout.subject, lockout.ip, lockout.details) == ("admin", "127.0.0.1", {"retry_after": 900})


def test_outside_the_admin_a_lockout_keeps_the_apis_json_shape(settings, db):
    request = RequestFactory().post("/api/v1/auth/token/")

    response = axes_lockout_response(request, None, {"username": "bob"})

    assert response.status_code == 429
    assert response["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    assert json.loads(response.content) == {
        "code": "locked_out",
        "detail": "Too many failed login attempts. Try again later.",
    }
    assert not AuditEntry.objects.exists()


# --- Logins, failures and logouts in the audit log ---------------------------------------------


def test_admin_logins_failures_and_logouts_are_audit_logged(make_user, client):
    admin = make_user(username="admin", is_staff=True)

    assert log_in(client, "admin", "wrong").status_code == 200
    assert log_in(client, "admin", HTTP_X_REQUEST_ID="req-login-1").status_code == 302
    assert client.post(ADMIN_LOGOUT).status_code == 200

    failed, login, logout = AuditEntry.objects.order_by("id")
    assert (failed.kind, failed.actor, failed.actor_label, failed.subject) == (
        "admin_login_failed",
        None,
        "anonymous",
        "admin",
    )
    assert failed.details == {"locked_out": False}
    assert (login.kind, login.actor, login.actor_label, login.ip, login.request_id) == (
        "admin_login",
        admin,
        "admin",
        "127.0.0.1",
        "req-login-1",
    )
    assert login.details == {"otp_verified": False}
    assert (logout.kind, logout.actor) == ("admin_logout", admin)


def test_api_logins_are_not_admin_logins(make_user, api_client):
    make_user(username="bob")

    response = api_client.post("/api/v1/auth/token/", {"username": "bob", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert not AuditEntry.objects.exists()


def test_audit_entries_are_listed_read_only_in_the_admin(make_user, client):
    admin = make_user(username="admin", is_staff=True, is_superuser=True)
    log_in(client, "admin")
    entry = AuditEntry.objects.get(kind="admin_login")

    listing = client.get(reverse("admin:audit_auditentry_changelist"))
    page = client.get(reverse("admin:audit_auditentry_change", args=[entry.pk]))

    assert listing.status_code == page.status_code == 200
    assert entry.chain_hash.encode() in page.content
    assert b'name="_save"' not in page.content
    assert client.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert client.post(reverse("admin:audit_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk, actor=admin).exists()


# --- Full recipient addresses ---------------------------------------------------------------------


@pytest.fixture
def held_gift(make_user):
    """A gift held for approval (so it is in the review queue, with a risk assessment and events)."""
    sender = make_user()
    return gift_create(sender=sender, recipient_email=ADDRESS, amount=Decimal("600.00"), currency="EUR", message="Hi")


@pytest.fixture
def wallet_gift(make_user):
    return gift_row(make_user(), recipient_email="", recipient_wallet=WALLET)


def staff_client(make_user, *codenames: str, superuser: bool = False) -> Client:
    user = make_user(is_staff=True, is_superuser=superuser)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    client.user = user
    return client


def shows_an_address(response) -> bool:
    page = response.content.decode().lower()
    return any(secret in page for secret in ("jane.doe", ADDRESS.lower(), WALLET.lower()))


ALL_VIEWS = [
    "view_gift",
    "view_giftevent",
    "view_giftreview",
    "review_gift",
    "view_riskassessment",
    "view_voucher",
    "view_auditentry",
]


@pytest.mark.parametrize("who", ["staff who can view everything else", "a superuser"])
def test_no_admin_page_shows_a_full_address_unless_revealed(make_user, held_gift, wallet_gift, who):
    client = staff_client(make_user, *ALL_VIEWS, superuser=who == "a superuser")
    event = GiftEvent.objects.filter(gift=held_gift).first()
    risk = RiskAssessment.objects.get(gift_id=held_gift.id)
    pages = [
        reverse("admin:index"),
        reverse("admin:gifting_gift_changelist"),
        reverse("admin:gifting_gift_change", args=[held_gift.pk]),
        reverse("admin:gifting_gift_change", args=[wallet_gift.pk]),
        reverse("admin:gifting_giftevent_changelist"),
        reverse("admin:gifting_giftevent_change", args=[event.pk]),
        reverse("admin:gifting_giftreview_changelist"),
        reverse("admin:gifting_giftreview_changelist") + "?queue=all",
        reverse("admin:gifting_giftreview_change", args=[held_gift.pk]),
        reverse("admin:fraud_riskassessment_changelist"),
        reverse("admin:fraud_riskassessment_change", args=[risk.pk]),
        reverse("admin:vouchers_voucher_changelist"),
        reverse("admin:audit_auditentry_changelist"),
    ]

    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert not shows_an_address(response), page
    gift_page = client.get(reverse("admin:gifting_gift_change", args=[held_gift.pk])).content.decode()
    assert "J***@example.org" in gift_page
    assert f"{held_gift.id}" in client.get(reverse("admin:gifting_giftreview_changelist")).content.decode()


def reveal_form(response) -> tuple[str, str]:
    """The "Show full address" form's action and CSRF token, from a gift's change page."""
    page = response.content.decode()
    [action] = re.findall(r'<form method="post" action="([^"]+/reveal-recipient/)">', page)
    [token] = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[:1]
    return action, token


def test_with_the_permission_a_reveal_shows_the_address_once_and_is_audit_logged(make_user, held_gift):
    client = Client(enforce_csrf_checks=True)
    staff = make_user(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_gift", "view_recipient_address"]))
    client.force_login(staff, backend="django.contrib.auth.backends.ModelBackend")
    change_url = reverse("admin:gifting_gift_change", args=[held_gift.pk])

    before = client.get(change_url)
    action, token = reveal_form(before)
    revealed = client.post(action, {"csrfmiddlewaretoken": token}, REMOTE_ADDR="192.0.2.5", follow=True)
    again = client.get(change_url)

    assert before.status_code == 200 and not shows_an_address(before)
    assert revealed.redirect_chain == [(change_url, 302)]
    assert ADDRESS in revealed.content.decode()
    assert "Show full address" not in revealed.content.decode()
    assert not shows_an_address(again)  # one reveal, one page
    [entry] = AuditEntry.objects.filter(kind="recipient_address_viewed")
    assert (entry.actor, entry.actor_label, entry.subject, entry.ip) == (
        staff,
        staff.username,
        str(held_gift.id),
        "192.0.2.5",
    )


def test_a_wallet_is_revealed_the_same_way(make_user, wallet_gift):
    client = staff_client(make_user, "view_gift", "view_recipient_address")

    response = client.post(reverse("admin:gifting_gift_reveal_recipient", args=[wallet_gift.pk]), follow=True)

    assert WALLET in response.content.decode()
    assert AuditEntry.objects.get(kind="recipient_address_viewed").subject == str(wallet_gift.id)


def test_a_reveal_shows_only_the_gift_it_was_for(make_user, held_gift, wallet_gift):
    client = staff_client(make_user, "view_gift", "view_recipient_address")

    client.post(reverse("admin:gifting_gift_reveal_recipient", args=[held_gift.pk]))
    other = client.get(reverse("admin:gifting_gift_change", args=[wallet_gift.pk]))
    revealed_one = client.get(reverse("admin:gifting_gift_change", args=[held_gift.pk]))

    assert not shows_an_address(other)
    assert not shows_an_address(revealed_one)  # the mark went with the first gift page viewed


def test_without_the_permission_there_is_no_button_and_no_reveal(make_user, held_gift):
    client = staff_client(make_user, "view_gift")

    page = client.get(reverse("admin:gifting_gift_change", args=[held_gift.pk]))
    refused = client.post(reverse("admin:gifting_gift_reveal_recipient", args=[held_gift.pk]), follow=True)

    assert "Show full address" not in page.content.decode()
    assert refused.status_code == 403
    assert not shows_an_address(refused)
    assert not AuditEntry.objects.filter(kind="recipient_address_viewed").exists()


def test_a_reveal_needs_a_post_with_a_csrf_token(make_user, held_gift):
    staff = make_user(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_gift", "view_recipient_address"]))
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff, backend="django.contrib.auth.backends.ModelBackend")
    url = reverse("admin:gifting_gift_reveal_recipient", args=[held_gift.pk])

    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("gift_id", ["00000000-0000-0000-0000-000000000000", "not-a-gift"])
def test_revealing_an_unknown_gift_is_a_404(make_user, gift_id):
    client = staff_client(make_user, "view_gift", "view_recipient_address")

    assert client.post(reverse("admin:gifting_gift_reveal_recipient", args=[gift_id])).status_code == 404
    assert not AuditEntry.objects.exists()


# --- TOTP for staff (ADMIN_REQUIRE_OTP) --------------------------------------------------------------


def totp_device(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def code_of(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):0{device.digits}d}"


def test_with_otp_off_a_password_is_enough(settings, make_user, client):
    settings.ADMIN_REQUIRE_OTP = False
    make_user(username="admin", is_staff=True)

    assert log_in(client, "admin").status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


def test_with_otp_on_staff_without_a_device_cannot_use_the_admin(settings, make_user, client):
    settings.ADMIN_REQUIRE_OTP = True
    staff = make_user(username="admin", is_staff=True, is_superuser=True)

    response = log_in(client, "admin")

    assert response.status_code == 200  # the form again, asking for a device and code
    assert b"OTP Token" in response.content
    assert "_auth_user_id" not in client.session
    # Even a session logged in with a password alone is not enough.
    client.force_login(staff, backend="django.contrib.auth.backends.ModelBackend")
    assert client.get(reverse("admin:index")).status_code == 302
    assert client.get(reverse("admin:gifting_gift_changelist")).status_code == 302


def test_with_otp_on_a_right_totp_code_lets_staff_in(settings, make_user, client):
    settings.ADMIN_REQUIRE_OTP = True
    device = totp_device(make_user(username="admin", is_staff=True))

    response = client.post(
        ADMIN_LOGIN,
        {
            "username": "admin",
            "password": PASSWORD,
            "otp_device": device.persistent_id,
            "otp_token": code_of(device),
            "next": "/admin/",
        },
    )

    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200
    assert AuditEntry.objects.get(kind="admin_login").details == {"otp_verified": True}


def test_with_otp_on_a_wrong_code_is_refused_and_audit_logged(settings, make_user, client):
    settings.ADMIN_REQUIRE_OTP = True
    staff = make_user(username="admin", is_staff=True)
    device = totp_device(staff)
    wrong = f"{(int(code_of(device)) + 1) % 10**device.digits:0{device.digits}d}"

    response = client.post(
        ADMIN_LOGIN,
        {"username": "admin", "password": PASSWORD, "otp_device": device.persistent_id, "otp_token": wrong},
    )

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("admin:index")).status_code == 302
    assert kinds() == ["admin_otp_failed"]
    assert AuditEntry.objects.get().actor == staff


def test_staff_enrol_totp_devices_in_the_admin(make_user):
    client = staff_client(make_user, superuser=True)
    device = totp_device(make_user(username="carol", is_staff=True))

    assert client.get(reverse("admin:otp_totp_totpdevice_add")).status_code == 200
    config = client.get(reverse("admin:otp_totp_totpdevice_config", args=[device.pk]))

    assert config.status_code == 200
    assert "otpauth://totp/Gift%20a%20Voucher%3Acarol?secret=" in config.content.decode()  # for the authenticator app

"""The security audit log: one append-only row per security event, in one tamper-evident chain."""

from enum import StrEnum

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditKind(StrEnum):
    """The kinds recorded today. audit_record takes any snake_case kind, so an app can add its own."""

    ADMIN_LOGIN = "admin_login"
    ADMIN_LOGIN_FAILED = "admin_login_failed"
    ADMIN_LOGOUT = "admin_logout"
    ADMIN_LOGIN_RATE_LIMITED = "admin_login_rate_limited"
    ADMIN_LOGIN_LOCKED_OUT = "admin_login_locked_out"
    ADMIN_OTP_FAILED = "admin_otp_failed"
    RECIPIENT_ADDRESS_VIEWED = "recipient_address_viewed"
    ENCRYPTION_KEYS_ROTATED = "encryption_keys_rotated"


class AppendOnlyError(Exception):
    pass


class AuditEntry(models.Model):
    """One security event. Never updated, never deleted (the model refuses, and so does the database)."""

    # Set by audit_record before saving: the chain hash covers it.
    at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    kind = models.CharField(max_length=64, db_index=True, help_text="What happened: see AuditKind.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=150, help_text="Who: a username, 'anonymous', 'manage.py' …")
    subject = models.CharField(max_length=200, blank=True, default="", help_text="What: a gift id, a username …")
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    chain_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor_label} at {self.at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit entries are append-only.")

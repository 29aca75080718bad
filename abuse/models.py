"""Blocks: a client (an IP address or a user) refused for a while, with the reason, kept for the admin and the record.

The cache holds the same block as the fast path every request reads (abuse.services);
this table is what staff see, what survives a cache flush, and where a lift is recorded.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class SubjectKind(models.TextChoices):
    IP = "ip", "IP address"
    USER = "user", "user"


class BlockQuerySet(models.QuerySet):
    def current(self) -> "BlockQuerySet":
        """Blocks in force: not lifted, not yet expired."""
        return self.filter(lifted_at__isnull=True, expires__gt=timezone.now())


class Block(models.Model):
    subject_kind = models.CharField(max_length=8, choices=SubjectKind.choices)
    # An IP address, or a user's primary key: never a username or an email address.
    subject = models.CharField(max_length=64)
    pattern = models.CharField(max_length=32, help_text="The pattern whose repeat caused the block.")
    reason = models.CharField(max_length=300, help_text="The pattern and its figures.")
    created = models.DateTimeField(default=timezone.now, editable=False)
    expires = models.DateTimeField()
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects = BlockQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["subject_kind", "subject", "expires"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires__gt=models.F("created")), name="block_expires_after_created"
            ),
            models.CheckConstraint(
                condition=models.Q(lifted_at__isnull=True) | models.Q(lifted_at__gte=models.F("created")),
                name="block_lifted_after_created",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_subject_kind_display()} {self.subject}: {self.pattern}"

    @property
    def in_force(self) -> bool:
        return self.lifted_at is None and self.expires > timezone.now()

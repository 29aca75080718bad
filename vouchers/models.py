"""Vouchers: what a gift turns into. Exactly one per gift, enforced by the database.

The code is a bearer secret: encrypted at rest (core.crypto). Lookups and its
uniqueness go through `code_index`, its blind index (vouchers.codes.code_index).
"""

import uuid

from django.db import models
from django.db.models import Q

from core.crypto import EncryptedTextField
from vouchers.codes import code_index


class VoucherStatus(models.TextChoices):
    ISSUED = "issued", "Issued"
    REDEEMED = "redeemed", "Redeemed"
    VOID = "void", "Void"


class Voucher(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    gift = models.OneToOneField("gifting.Gift", on_delete=models.PROTECT, related_name="voucher")
    code = EncryptedTextField(max_length=32)
    code_index = models.CharField(max_length=64, unique=True, editable=False)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=VoucherStatus.choices, default=VoucherStatus.ISSUED)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="voucher_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=VoucherStatus.values), name="voucher_status_valid"),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="voucher_expires_later"),
        ]

    def __str__(self) -> str:
        return f"Voucher for gift {self.gift_id} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        if self._state.adding:  # a voucher's code never changes
            self.code_index = code_index(self.code)
        super().save(*args, **kwargs)

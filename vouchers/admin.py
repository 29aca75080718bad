from django.contrib import admin

from core.admin import ReadOnlyAdmin
from vouchers.models import Voucher


@admin.register(Voucher)
class VoucherAdmin(ReadOnlyAdmin):
    list_display = ["id", "gift", "amount", "currency", "status", "expires_at", "created_at"]
    list_filter = ["status", "currency"]
    # The code is a bearer secret: staff see that a voucher exists, not its code (nor its blind index).
    exclude = ["code", "code_index"]
    readonly_fields = ["gift", "amount", "currency", "status", "expires_at", "created_at"]

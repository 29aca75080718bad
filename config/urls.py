from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.api import LogoutAllApi, LogoutApi, TokenObtainApi
from core.health import healthz, readyz
from gifting.api import GiftDetailApi, GiftListCreateApi
from gifting.metrics import metrics_view
from gifting.ops_admin import operations_view
from gifting.views import verify_recipient

urlpatterns = [
    # The review queue moved from the fraud app to gifting; old bookmarks still land on it.
    path(
        "admin/fraud/giftreview/",
        RedirectView.as_view(pattern_name="admin:gifting_giftreview_changelist", query_string=True),
    ),
    path("admin/operations/", admin.site.admin_view(operations_view), name="admin-operations"),
    path("admin/", admin.site.urls),
    path("api/v1/auth/token/", TokenObtainApi.as_view(), name="api-token"),
    path("api/v1/auth/logout/", LogoutApi.as_view(), name="api-logout"),
    path("api/v1/auth/logout-all/", LogoutAllApi.as_view(), name="api-logout-all"),
    path("api/v1/gifts/", GiftListCreateApi.as_view(), name="gift-list"),
    path("api/v1/gifts/<str:gift_id>/", GiftDetailApi.as_view(), name="gift-detail"),
    path("gifts/verify/<str:token>/", verify_recipient, name="verify-recipient"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]

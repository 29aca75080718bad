from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import healthz, readyz
from fraud.views import verify_recipient
from gifting.api import GiftDetailApi, GiftListCreateApi, TokenObtainApi
from gifting.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/auth/token/", TokenObtainApi.as_view(), name="api-token"),
    path("api/v1/gifts/", GiftListCreateApi.as_view(), name="gift-list"),
    path("api/v1/gifts/<str:gift_id>/", GiftDetailApi.as_view(), name="gift-detail"),
    path("gifts/verify/<str:token>/", verify_recipient, name="verify-recipient"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]

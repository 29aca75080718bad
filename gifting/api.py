"""The gifting API: thin views that parse, call a service or selector, and render."""

import uuid

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.access_log import add_log_fields
from core.ratelimit import enforce_rate_limit, raise_if_locked_out
from gifting import idempotency
from gifting.selectors import gift_get_for_user, gift_list_for_user
from gifting.serializers import (
    ErrorSerializer,
    GiftCreateInputSerializer,
    GiftDetailOutputSerializer,
    GiftOutputSerializer,
)
from gifting.services.intake import gift_create

IDEMPOTENCY_HEADER = "Idempotency-Key"


class GiftPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class GiftListCreateApi(APIView):
    @extend_schema(
        request=GiftCreateInputSerializer,
        responses={
            202: GiftOutputSerializer,
            400: OpenApiResponse(description='Invalid input: field errors, e.g. {"amount": ["..."]}.'),
            401: ErrorSerializer,
            409: OpenApiResponse(ErrorSerializer, description="idempotency_key_in_use"),
            422: OpenApiResponse(
                ErrorSerializer, description="idempotency_key_reused, amount_limit, daily_quota or weekly_quota"
            ),
            429: OpenApiResponse(ErrorSerializer, description="rate_limited, with Retry-After"),
        },
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER, required=True)],
    )
    def post(self, request: Request) -> Response:
        # Every attempt counts, before anything is validated: invalid requests and
        # idempotent replays cost us too, and clients get one simple rule. The user's
        # own limit goes first, so requests it refuses do not use up the budget of
        # everyone else behind the same address.
        enforce_rate_limit(request, group="gift-create:user", key="user", rate=settings.RATELIMIT_GIFT_USER)
        enforce_rate_limit(request, group="gift-create:ip", key="ip", rate=settings.RATELIMIT_GIFT_IP)
        try:
            key = idempotency.validate_key(request.headers.get(IDEMPOTENCY_HEADER))
        except ValueError as exc:
            raise ValidationError({IDEMPOTENCY_HEADER: [str(exc)]}) from exc
        serializer = GiftCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        def create() -> tuple[int, dict, object]:
            gift = gift_create(sender=request.user, **serializer.validated_data)
            return status.HTTP_202_ACCEPTED, GiftOutputSerializer(gift).data, gift

        result = idempotency.run_idempotently(user=request.user, key=key, body=request.data, operation=create)
        # The body's recipient is already masked; the decision is the status the gift got.
        add_log_fields(
            request,
            gift=result.body["id"],
            recipient=result.body["recipient"],
            decision=result.body["status"],
            replayed=result.replayed,
        )
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(result.body, status=result.status, headers=headers)

    @extend_schema(responses={200: GiftOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        paginator = GiftPagination()
        page = paginator.paginate_queryset(gift_list_for_user(user=request.user), request, view=self)
        return paginator.get_paginated_response(GiftOutputSerializer(page, many=True).data)


class GiftDetailApi(APIView):
    @extend_schema(responses={200: GiftDetailOutputSerializer, 404: ErrorSerializer})
    def get(self, request: Request, gift_id: str) -> Response:
        try:
            gift = gift_get_for_user(user=request.user, gift_id=uuid.UUID(gift_id))
        except ValueError:
            gift = None
        if gift is None:
            raise NotFound("No such gift.")
        return Response(GiftDetailOutputSerializer(gift).data)


class TokenObtainApi(ObtainAuthToken):
    """POST {username, password} → {token}; wrong credentials → 400; locked out by django-axes → 429."""

    authentication_classes = []
    permission_classes = []

    def get_serializer_context(self) -> dict:
        # django-axes records failures from, and flags lockouts on, the request given to
        # authenticate(). Give it Django's HttpRequest, as it expects, not DRF's wrapper:
        # attributes set on the wrapper would not reach raise_if_locked_out or AxesMiddleware.
        return {**super().get_serializer_context(), "request": self.request._request}

    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        enforce_rate_limit(request, group="auth-token:ip", key="ip", rate=settings.RATELIMIT_TOKEN_IP)
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            raise_if_locked_out(request._request)
            raise ValidationError(serializer.errors)
        user = serializer.validated_data["user"]
        # Getting a token is logging in: axes forgets the client's failures (AXES_RESET_ON_SUCCESS)
        # and logs the access, and Django updates last_login.
        user_logged_in.send(sender=type(user), request=request._request, user=user)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})

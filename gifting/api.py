"""The gifting API: thin views that parse, call a service or selector, and render."""

import uuid

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.access_log import add_log_fields
from core.errors import ErrorCode
from core.openapi import (
    LIMITS_UNAVAILABLE,
    NOT_AUTHENTICATED,
    PAYLOAD_TOO_LARGE,
    RETRY_AFTER,
    UNSUPPORTED_MEDIA_TYPE,
    error_response,
    field_errors,
)
from core.ratelimit import enforce_rate_limit
from gifting import idempotency
from gifting.selectors import gift_get_for_user, gift_list_for_user
from gifting.serializers import (
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


# --- What the schema (GET /api/schema/) says each operation answers -------------------------------
# Every status the view, its parser, its authentication or its rate limits can answer is listed,
# so that a client (and tests/test_api_fuzz.py) can rely on the schema.

FIELD_ERRORS = field_errors(
    'Invalid input, in DRF\'s field-error shape: `{"field": ["message"]}`; malformed JSON '
    "(also nested too deep, or with invalid Unicode) under `non_field_errors`."
)


class GiftListCreateApi(APIView):
    pagination_class = GiftPagination

    @extend_schema(
        request=GiftCreateInputSerializer,
        responses={
            202: OpenApiResponse(
                GiftOutputSerializer,
                description="Accepted; delivered asynchronously. A replayed request answers the stored response "
                "with `Idempotent-Replayed: true`.",
            ),
            400: FIELD_ERRORS,
            401: NOT_AUTHENTICATED,
            409: error_response(
                "A request with this Idempotency-Key is still being processed.", ErrorCode.IDEMPOTENCY_KEY_IN_USE
            ),
            413: PAYLOAD_TOO_LARGE,
            415: UNSUPPORTED_MEDIA_TYPE,
            422: error_response(
                "The Idempotency-Key was used with another body, or a fraud limit refuses the gift.",
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                ErrorCode.AMOUNT_LIMIT,
                ErrorCode.DAILY_QUOTA,
                ErrorCode.WEEKLY_QUOTA,
            ),
            429: error_response(
                "Too many requests, per user or per address (rate_limited), or this client is blocked after "
                "suspicious activity (blocked).",
                ErrorCode.RATE_LIMITED,
                ErrorCode.BLOCKED,
            ),
            503: LIMITS_UNAVAILABLE,
        },
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_LENGTH},
                OpenApiParameter.HEADER,
                required=True,
                pattern=r"^[\x20-\x7E]+$",
                description="Printable ASCII, unique per gift; the same key and body again replays the response.",
            ),
            OpenApiParameter(
                "Idempotent-Replayed",
                {"type": "string", "enum": ["true"]},
                OpenApiParameter.HEADER,
                response=[202],
                description="Present when the response is a replay of an earlier request with this key.",
            ),
            RETRY_AFTER,
        ],
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

    @extend_schema(
        responses={
            200: GiftOutputSerializer(many=True),
            401: NOT_AUTHENTICATED,
            404: error_response("No such page.", ErrorCode.NOT_FOUND),
        }
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(gift_list_for_user(user=request.user), request, view=self)
        return paginator.get_paginated_response(GiftOutputSerializer(page, many=True).data)


class GiftDetailApi(APIView):
    @extend_schema(
        responses={
            200: GiftDetailOutputSerializer,
            401: NOT_AUTHENTICATED,
            404: error_response("No such gift among yours.", ErrorCode.NOT_FOUND),
        }
    )
    def get(self, request: Request, gift_id: str) -> Response:
        try:
            gift = gift_get_for_user(user=request.user, gift_id=uuid.UUID(gift_id))
        except ValueError:
            gift = None
        if gift is None:
            raise NotFound("No such gift.")
        return Response(GiftDetailOutputSerializer(gift).data)

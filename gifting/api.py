"""The gifting API: thin views that parse, call a service or selector, and render."""

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gifting import idempotency
from gifting.selectors import gift_get_for_user, gift_list_for_user
from gifting.serializers import GiftCreateInputSerializer, GiftDetailOutputSerializer, GiftOutputSerializer
from gifting.services import gift_create

IDEMPOTENCY_HEADER = "Idempotency-Key"


class GiftPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class GiftListCreateApi(APIView):
    @extend_schema(
        request=GiftCreateInputSerializer,
        responses={202: GiftOutputSerializer},
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER, required=True)],
    )
    def post(self, request: Request) -> Response:
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
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(result.body, status=result.status, headers=headers)

    @extend_schema(responses={200: GiftOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        paginator = GiftPagination()
        page = paginator.paginate_queryset(gift_list_for_user(user=request.user), request, view=self)
        return paginator.get_paginated_response(GiftOutputSerializer(page, many=True).data)


class GiftDetailApi(APIView):
    @extend_schema(responses={200: GiftDetailOutputSerializer})
    def get(self, request: Request, gift_id: str) -> Response:
        try:
            gift = gift_get_for_user(user=request.user, gift_id=uuid.UUID(gift_id))
        except ValueError:
            gift = None
        if gift is None:
            raise NotFound("No such gift.")
        return Response(GiftDetailOutputSerializer(gift).data)


class TokenObtainApi(ObtainAuthToken):
    """POST {username, password} → {token}; wrong credentials → 400."""

    authentication_classes = []
    permission_classes = []

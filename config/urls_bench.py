"""The benchmarks' URLs (config/settings_bench.py only): production's, plus the accept path's floor.

POST /bench/floor/ is what accepting a gift costs at least on this stack: the same DRF view
machinery (authentication, permission, parser, renderer, exception handler from REST_FRAMEWORK),
the same body validated by the same serializer, and one row inserted into `bench_floor`, a table
bench/stack.py creates in the benchmark's database (it is no model: production never has it).
No rate limits, idempotency, fraud rules, audit events or SQS publish: those are what the
product adds above the floor. Never included in config/urls.py.

`?round_trips=N` adds N trivial statements (`SELECT 1`) in one transaction around the insert: the
floor of a view that talks to PostgreSQL as often as the product does, which tells the cost of its
round trips apart from the cost of its Python (bench/accept.py, docs/benchmarks.md).
"""

import uuid

from django.db import connection, transaction
from django.urls import path
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as production_urlpatterns
from gifting.serializers import GiftCreateInputSerializer

FLOOR_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS bench_floor ("
    " id uuid PRIMARY KEY, sender_id bigint NOT NULL, recipient varchar(254) NOT NULL,"
    " amount numeric(12, 2) NOT NULL, currency varchar(3) NOT NULL, message text NOT NULL,"
    " created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP)"
)


MAX_ROUND_TRIPS = 100


class FloorApi(APIView):
    def post(self, request: Request) -> Response:
        serializer = GiftCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        row_id = uuid.uuid4()
        round_trips = min(max(int(request.query_params.get("round_trips", "0") or 0), 0), MAX_ROUND_TRIPS)
        with transaction.atomic(), connection.cursor() as cursor:
            for _ in range(round_trips):
                cursor.execute("SELECT 1")
            cursor.execute(
                "INSERT INTO bench_floor (id, sender_id, recipient, amount, currency, message)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    str(row_id),
                    request.user.pk,
                    data.get("recipient_email") or data.get("recipient_wallet"),
                    data["amount"],
                    data["currency"],
                    data["message"],
                ],
            )
        return Response({"id": str(row_id)}, status=status.HTTP_202_ACCEPTED)


urlpatterns = [
    *production_urlpatterns,
    path("bench/floor/", FloorApi.as_view(), name="bench-floor"),
]

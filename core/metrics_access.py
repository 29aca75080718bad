"""Who may read /metrics: loopback and METRICS_ALLOWED_NETS freely, anyone else with METRICS_TOKEN.

Metrics carry no personal data, but queue depths and failure counts are
operational intelligence; a scraper outside the allowed networks presents the
token as `Authorization: Bearer …`.
"""

import hmac
import ipaddress
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.client_ip import client_ip
from core.errors import ErrorCode


def _from_allowed_network(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    if address.is_loopback:
        return True
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETS)


def _has_token(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def metrics_access_required(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Let loopback, METRICS_ALLOWED_NETS and holders of METRICS_TOKEN through; 401 for everyone else."""

    @wraps(view)
    def guarded(request: HttpRequest) -> HttpResponse:
        if _from_allowed_network(request) or _has_token(request):
            return view(request)
        response = JsonResponse(
            {
                "code": ErrorCode.NOT_AUTHENTICATED,
                "detail": "Metrics need a bearer token from outside the allowed networks.",
            },
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response

    return guarded

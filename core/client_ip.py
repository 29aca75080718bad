"""The client's IP address, taken safely behind a known number of proxies."""

from django.conf import settings
from django.http import HttpRequest

# Behind a unix socket (gunicorn --bind unix:…) the server knows no peer address; every such
# request counts as this one address, so rate limits still apply (set TRUSTED_PROXY_HOPS there).
UNKNOWN_ADDRESS = "0.0.0.0"  # noqa: S104 - a placeholder, never bound


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the address the outermost trusted proxy saw.

    Each trusted proxy appends the address it received the request from to
    X-Forwarded-For, so with N trusted hops the client is the Nth entry from
    the right. Entries further left are whatever the client chose to send.
    """
    peer = request.META.get("REMOTE_ADDR") or UNKNOWN_ADDRESS
    hops = settings.TRUSTED_PROXY_HOPS
    if hops <= 0:
        return peer
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return peer
    return forwarded[-hops]

"""How delivery can fail: transient failures are retried, permanent ones are not."""


class DeliveryError(Exception):
    """A failed delivery. `reason` is coarse and safe to show the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientDeliveryError(DeliveryError):
    """Worth retrying later: SMTP 4xx, connection errors, timeouts, HTTP 5xx/429."""


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: SMTP 5xx, HTTP 4xx, an invalid recipient."""

"""API tokens are knox's AuthToken rows: a SHA-512 digest of the token, its first characters, expiry."""

from knox.models import AuthToken


class ApiToken(AuthToken):
    """knox's token as staff see it: named by its prefix and user, never by its digest.

    knox's own __str__ is the full digest, which the admin would print in titles,
    messages and the history log (django_admin_log).
    """

    class Meta:
        proxy = True
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.token_key}… ({self.user})"

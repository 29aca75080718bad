"""Accounts: API tokens (django-rest-knox) — log in for a token, log out, log out everywhere."""

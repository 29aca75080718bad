"""Solving challenges as a client would, with the altcha library's own solver."""

import base64
import json

import altcha

TOKEN = "/api/v1/auth/token/"
ADMIN_LOGIN = "/admin/login/"
PASSWORD = "correct-horse-battery"  # make_user's default


def solve(challenge: dict, *, number: int | None = None) -> str:
    """The base64 JSON payload ALTCHA's widget sends for `challenge` (or with a chosen, wrong, number)."""
    if number is None:
        solution = altcha.solve_challenge_v1(
            challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxnumber"]
        )
        assert solution is not None, "the challenge has no solution up to its maxnumber"
        number = solution.number
    payload = {key: challenge[key] for key in ("algorithm", "challenge", "salt", "signature")}
    return base64.b64encode(json.dumps({**payload, "number": number}).encode()).decode()


def post_token(client, username: str, password: str = PASSWORD, *, ip: str, solution: str | None = None):
    headers = {"HTTP_X_CHALLENGE_SOLUTION": solution} if solution else {}
    body = {"username": username, "password": password}
    return client.post(TOKEN, body, format="json", REMOTE_ADDR=ip, **headers)


def assert_challenge_required(response) -> dict:
    """The 428 and its challenge; returns the challenge."""
    assert response.status_code == 428, response.content
    body = response.json()
    assert body["code"] == "challenge_required"
    assert body["detail"]
    assert set(body["challenge"]) == {"algorithm", "challenge", "salt", "signature", "maxnumber"}
    return body["challenge"]

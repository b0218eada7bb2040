"""API authentication by personal token: django-rest-knox, hardened against malformed headers."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions


class TokenAuthentication(KnoxTokenAuthentication):
    """``Authorization: Token <token>``. A header that is not ASCII, or a token of the wrong shape,
    is refused with 401 like any wrong token (knox would fail with a 500 on some of them)."""

    def authenticate_credentials(self, token: bytes):
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        if not 10 <= len(text) <= 200 or not text.isprintable():
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(token)


class TokenScheme(OpenApiAuthenticationExtension):
    """Documents the personal tokens in the OpenAPI schema (Swagger's "Authorize" button)."""

    target_class = "accounts.auth.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'A personal API token (API tokens page), sent as "Token <token>".',
        }

"""JSON API for your own personal API tokens: list, create (shown once), revoke."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from core.errors import Forbidden, ServiceError

from . import services
from .auth import TokenAuthentication


class TokenSerializer(serializers.Serializer):
    """A token as its owner sees it: never the token itself, only how it starts."""

    id = serializers.CharField(source="token_key", help_text="how the token starts; names it in the API")
    name = serializers.SerializerMethodField()
    created = serializers.DateTimeField()
    expires = serializers.DateTimeField(source="expiry", allow_null=True)

    def get_name(self, token) -> str:
        return getattr(getattr(token, "info", None), "name", "")


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_in_days = serializers.IntegerField(min_value=1, max_value=services.MAX_DAYS, default=90)


CreatedToken = inline_serializer(
    "CreatedToken",
    {
        "id": serializers.CharField(),
        "name": serializers.CharField(),
        "created": serializers.DateTimeField(),
        "expires": serializers.DateTimeField(),
        "token": serializers.CharField(help_text="shown only now: send it as 'Authorization: Token <token>'"),
    },
)


class TokenViewSet(viewsets.ViewSet):
    """Your personal API tokens. They act with your permissions until they expire or are revoked."""

    serializer_class = TokenSerializer
    lookup_value_regex = "[A-Za-z0-9_]{1,25}"

    @extend_schema(responses=TokenSerializer(many=True))
    def list(self, request):
        return Response(TokenSerializer(services.token_list(user=request.user), many=True).data)

    @extend_schema(request=TokenCreateSerializer, responses={201: CreatedToken})
    def create(self, request):
        if isinstance(request.successful_authenticator, TokenAuthentication):
            # A leaked token must not be able to mint longer-lived ones.
            raise Forbidden("Create API tokens from a signed-in session (the API tokens page), not with a token.")
        if not isinstance(request.data, dict):
            raise ServiceError("Send a JSON object.")
        serializer = TokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        instance, token = services.token_create(user=request.user, **serializer.validated_data)
        return Response({**TokenSerializer(instance).data, "token": token}, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        services.token_revoke(user=request.user, token=services.token_get(user=request.user, token_id=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

"""JSON API of the console: issue a ticket, list a VM's console sessions (read-only)."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from core import access
from vms.selectors import vm_get

from .models import ConsoleSession
from .services import console_sessions, console_ticket_issue

TicketResponse = inline_serializer(
    "ConsoleTicket",
    {
        "token": serializers.CharField(help_text="single-use; give it to the console websocket as ?token="),
        "url": serializers.CharField(help_text="the websocket URL to open (ws:// or wss://), token included"),
        "expires_in": serializers.IntegerField(help_text="seconds the ticket stays valid if unused"),
    },
)


class ConsoleSessionSerializer(serializers.ModelSerializer):
    """One console session: who opened which VM's console, from where, when, and how it ended."""

    class Meta:
        model = ConsoleSession
        fields = [
            "id", "username", "vm_uuid", "vm_name", "host_name", "client_address", "opened_at",
            "closed_at", "close_reason", "bytes_in", "bytes_out",
        ]  # fmt: skip
        read_only_fields = fields


class ConsoleTicketView(APIView):
    """Open a VM's console: a single-use ticket for the console websocket (valid ≤ 30 s)."""

    @extend_schema(request=None, responses={201: TicketResponse}, operation_id="vms_console_ticket")
    def post(self, request, uuid):
        ticket = console_ticket_issue(
            user=request.user, vm=vm_get(uuid=uuid), secure=request.is_secure(), http_host=request.get_host()
        )
        return Response(
            {"token": ticket.token, "url": ticket.url, "expires_in": ticket.expires_in}, status=status.HTTP_201_CREATED
        )


class ConsoleSessionListView(APIView):
    """The console sessions of a VM, newest first."""

    @extend_schema(responses=ConsoleSessionSerializer(many=True), operation_id="vms_console_sessions")
    def get(self, request, uuid):
        vm = vm_get(uuid=uuid)
        access.require(request.user, access.CONSOLE, vm, what="console.sessions")
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(console_sessions(vm_uuid=vm.uuid), request, view=self)
        return paginator.get_paginated_response(ConsoleSessionSerializer(page, many=True).data)

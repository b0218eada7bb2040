"""Keeps the current request at hand for audit events recorded deep inside services.

Services are told who acts (``user=``); where the request came from is the same for everything a
request does, so it is looked up here once rather than passed through every signature.
"""

from __future__ import annotations

from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

current_request: ContextVar = ContextVar("virtfleet_current_request", default=None)


class RequestContextMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        token = current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            current_request.reset(token)

    async def __acall__(self, request):
        token = current_request.set(request)
        try:
            return await self.get_response(request)
        finally:
            current_request.reset(token)

"""The ASGI routes outside Django's views: the live socket, and the bytes of volume transfers."""

from django.urls import path, re_path

from core.consumers import LiveConsumer
from storage.consumers import TransferApp

websocket_urlpatterns = [
    path("ws/live/", LiveConsumer.as_asgi()),
]
# Before Django's own URLs: a view would spool a chunk to disk and buffer a download in memory.
http_urlpatterns = [
    re_path(r"^api/transfers/(?P<job_id>[0-9]{1,18})/$", TransferApp()),
]

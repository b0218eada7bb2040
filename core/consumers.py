"""The one WebSocket endpoint browsers keep open: /ws/live/.

Thin: it checks the login, lets the page subscribe to topics (``fleet``, ``jobs``, ``host:<id>``,
``vm:<uuid>``, ``job:<id>``), joins the matching Channels groups and forwards the typed events
services push there. A user only receives what they may see (``core.access``).
"""

from __future__ import annotations

import re
import time
import uuid as uuidlib

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core import access
from core.net import forwarded_client
from core.realtime import FLEET_GROUP, JOBS_GROUP, host_group, job_group, vm_group

MAX_TOPICS = 200
REFRESH_SECONDS = access.CACHE_SECONDS  # permissions are read again this often while a socket is open
_TOPIC = re.compile(r"^(fleet|jobs|host:\d{1,12}|job:\d{1,12}|vm:[0-9a-fA-F-]{32,36})$")


def topic_group(topic: str) -> str | None:
    """The Channels group behind a topic name, or None when the topic is malformed."""
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        return None
    if topic == "fleet":
        return FLEET_GROUP
    if topic == "jobs":
        return JOBS_GROUP
    kind, _, ident = topic.partition(":")
    if kind == "host":
        return host_group(int(ident))
    if kind == "job":
        return job_group(int(ident))
    try:
        return vm_group(uuidlib.UUID(ident))
    except ValueError:
        return None


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)  # the page shows "sign in again"
            return
        self.groups_joined: set[str] = set()
        self.visibility = await database_sync_to_async(access.visibility_for)(user)
        self.visibility_at = time.monotonic()
        await self.accept()
        await self.send_json({"type": "hello", "user": user.get_username()})

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = await self.decode_json(text_data) if text_data else None
        except ValueError:
            content = None
        if content is None:
            await self.send_json({"type": "error", "error": "Send JSON text messages."})
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "error": "Send a JSON object."})
            return
        action = content.get("action")
        topics = content.get("topics")
        if action not in ("subscribe", "unsubscribe") or not isinstance(topics, list):
            await self.send_json(
                {"type": "error", "error": 'Expected {"action": "subscribe"|"unsubscribe", "topics": [...]}.'}
            )
            return
        accepted, refused = [], []
        for topic in topics[:MAX_TOPICS]:
            group = topic_group(topic)
            if group is None:
                refused.append({"topic": str(topic)[:80], "reason": "unknown topic"})
                continue
            if action == "subscribe":
                if not await database_sync_to_async(access.may_subscribe)(self.scope["user"], topic):
                    refused.append({"topic": topic, "reason": "not permitted"})
                    await database_sync_to_async(_audit_refused)(self.scope, topic)
                    continue
                if group not in self.groups_joined:
                    await self.channel_layer.group_add(group, self.channel_name)
                    self.groups_joined.add(group)
            elif group in self.groups_joined:
                await self.channel_layer.group_discard(group, self.channel_name)
                self.groups_joined.discard(group)
            accepted.append(topic)
        await self.send_json({"type": f"{action}d", "topics": accepted, "refused": refused})

    async def push(self, message):
        event = message["event"]
        if time.monotonic() - self.visibility_at > REFRESH_SECONDS:
            await self._refresh()
            if self.visibility is None:
                return
        if self.visibility.allows(message.get("audience") or {}):
            await self.send_json(event)

    async def _refresh(self) -> None:
        """Read the user's rights again: revoked ones stop the events; a disabled user is closed."""
        self.visibility_at = time.monotonic()
        user = await database_sync_to_async(_reload)(self.scope["user"])
        if user is None:
            self.visibility = None
            await self.close(code=4401)
            return
        self.scope["user"] = user
        self.visibility = await database_sync_to_async(access.visibility_for)(user)


def _reload(user):
    """``user`` read again from the database, or None when it was deleted or disabled."""
    from django.contrib.auth import get_user_model

    fresh = get_user_model().objects.filter(pk=user.pk, is_active=True).first()
    return fresh


def _audit_refused(scope, topic: str) -> None:
    headers = dict(scope.get("headers") or [])
    peer = (scope.get("client") or [None])[0]
    access.record_refusal(
        user=scope["user"],
        action="live.subscribe",
        message=f"may not follow {topic}",
        details={"topic": topic},
        ip=forwarded_client(headers.get(b"x-forwarded-for", b"").decode("latin-1"), peer),
    )

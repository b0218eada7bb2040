"""The transfer endpoint (storage.consumers) and its Redis relay (storage.transfers) against the real
Redis, with the worker's side played by the relay's worker classes: who may send, what is refused
before the body is read, resuming at the accepted offset, and downloads that stop the worker when the
browser goes away. (The whole path with a real worker and a real host: tests/e2e/test_storage.py.)"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import HttpCommunicator
from django.contrib.auth.models import AnonymousUser
from django.urls import re_path

from jobs.models import Job
from storage import transfers
from storage.consumers import TransferApp

pytestmark = pytest.mark.django_db(transaction=True)
CHUNK = transfers.CHUNK


def app_for(user):
    """The endpoint with ``user`` signed in (what AuthMiddlewareStack finds for HEAD and GET; a PATCH
    is judged by its token alone)."""
    inner = URLRouter([re_path(r"^api/transfers/(?P<job_id>[0-9]+)/$", TransferApp().serve)])

    async def with_user(scope, receive, send):
        return await inner({**scope, "user": user}, receive, send)

    return with_user


async def call(user, method, job_id, *, body=b"", headers=(), query=""):
    path = f"/api/transfers/{job_id}/" + (f"?{query}" if query else "")
    headers = [(k.encode(), str(v).encode()) for k, v in headers]
    if body and not any(k == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    communicator = HttpCommunicator(app_for(user), method, path, body=body, headers=headers)
    response = await communicator.get_response(timeout=10)
    return response["status"], dict(response["headers"]), response["body"]


@pytest.fixture
def people(django_user_model):
    return (
        django_user_model.objects.create_user(username="ann", password="pw-ann-12345"),
        django_user_model.objects.create_user(username="bob", password="pw-bob-12345"),
    )


def make_job(user, kind="volume.upload", **params):
    job = Job.objects.create(kind=kind, status="running", requested_by=user, params=params)
    return job, transfers.open_transfer(job.pk)


async def test_only_who_started_it_may_send_and_a_token_is_needed(people):
    ann, bob = people
    job, token = await database_sync_to_async(make_job)(ann, size=10)
    assert (await call(AnonymousUser(), "HEAD", job.pk))[0] == 401
    assert (await call(bob, "HEAD", job.pk))[0] == 404  # another user's upload does not exist for him
    status, _, body = await call(ann, "PATCH", job.pk, body=b"x", headers=[("Upload-Offset", 0)])
    assert status == 403 and b"bad_token" in body
    # the token is the right to send: anyone without it is refused, whoever is signed in
    forged = [("Upload-Offset", 0), ("X-Upload-Token", "x" * 43)]
    status, _, body = await call(AnonymousUser(), "PATCH", job.pk, body=b"x", headers=forged)
    assert status == 403 and b"bad_token" in body
    status, _, _ = await call(AnonymousUser(), "PATCH", job.pk, body=b"x", headers=[("Upload-Offset", 0),
                                                                                    ("X-Upload-Token", token)])  # fmt: skip
    assert status == 204
    status, _, body = await call(ann, "GET", job.pk)
    assert status == 405 and b"HEAD or PATCH" in body


async def test_chunks_go_in_order_and_resume_where_the_server_has_them(people):
    ann, _ = people
    job, token = await database_sync_to_async(make_job)(ann, size=CHUNK + 100)
    auth = ("X-Upload-Token", token)
    status, headers, _ = await call(ann, "PATCH", job.pk, body=b"a" * CHUNK, headers=[auth, ("Upload-Offset", 0)])
    assert status == 204 and headers[b"Upload-Offset"] == str(CHUNK).encode()
    # the browser lost the answer and sends the same chunk again: told where to go on instead
    status, headers, body = await call(ann, "PATCH", job.pk, body=b"a" * CHUNK, headers=[auth, ("Upload-Offset", 0)])
    assert status == 409 and headers[b"Upload-Offset"] == str(CHUNK).encode() and b"offset" in body
    status, headers, _ = await call(ann, "HEAD", job.pk)
    assert status == 200 and headers[b"Upload-Offset"] == str(CHUNK).encode()
    assert headers[b"Upload-Length"] == str(CHUNK + 100).encode()
    status, _, body = await call(ann, "PATCH", job.pk, body=b"b" * 101, headers=[auth, ("Upload-Offset", CHUNK)])
    assert status == 400 and b"the file has" in body  # past the announced size: refused
    status, _, _ = await call(ann, "PATCH", job.pk, body=b"b" * 100, headers=[auth, ("Upload-Offset", CHUNK)])
    assert status == 204
    queue = transfers.UploadQueue(job.pk)  # the worker's side gets both chunks, in order, once
    got = [queue.take(timeout=1), queue.take(timeout=1)]
    assert [(offset, len(data)) for offset, data in got] == [(0, CHUNK), (CHUNK, 100)]
    assert queue.take(timeout=1) is None


async def test_zeros_the_browser_did_not_send_reach_the_worker_as_a_hole(people):
    ann, _ = people
    job, token = await database_sync_to_async(make_job)(ann, size=3 * CHUNK)
    auth = ("X-Upload-Token", token)
    status, _, _ = await call(ann, "PATCH", job.pk, body=b"d" * 10, headers=[auth, ("Upload-Offset", 0)])
    assert status == 204
    status, headers, _ = await call(ann, "PATCH", job.pk, headers=[auth, ("Upload-Offset", 10), ("Upload-Hole", CHUNK)])
    assert status == 204 and headers[b"Upload-Offset"] == str(CHUNK + 10).encode()
    too_long = [auth, ("Upload-Offset", CHUNK + 10), ("Upload-Hole", 2 * CHUNK)]
    status, _, body = await call(ann, "PATCH", job.pk, headers=too_long)
    assert status == 400 and b"within the file" in body
    queue = transfers.UploadQueue(job.pk)
    assert queue.take(timeout=1) == (0, b"d" * 10)
    assert queue.take(timeout=1) == (10, CHUNK)  # a length, not bytes


async def test_a_chunk_too_large_is_refused_before_its_body_is_read(people):
    ann, _ = people
    job, token = await database_sync_to_async(make_job)(ann, size=4 * CHUNK)
    headers = [("X-Upload-Token", token), ("Upload-Offset", 0), ("Content-Length", CHUNK + 1)]
    status, _, body = await call(ann, "PATCH", job.pk, body=b"", headers=headers)
    assert status == 413 and b"at most" in body
    status, _, body = await call(ann, "PATCH", job.pk, body=b"x", headers=[("X-Upload-Token", token)])
    assert status == 400 and b"Upload-Offset" in body


async def test_a_full_queue_makes_the_browser_wait_then_retry(people, monkeypatch):
    from storage import consumers

    monkeypatch.setattr(consumers, "ROOM_WAIT", 0.2)
    ann, _ = people
    job, token = await database_sync_to_async(make_job)(ann, size=10 * CHUNK)
    auth = ("X-Upload-Token", token)
    for i in range(transfers.MAX_QUEUED):  # nobody takes them: the queue fills
        status, _, _ = await call(ann, "PATCH", job.pk, body=b"c" * CHUNK, headers=[auth, ("Upload-Offset", i * CHUNK)])
        assert status == 204
    offset = transfers.MAX_QUEUED * CHUNK
    status, headers, _ = await call(ann, "PATCH", job.pk, body=b"c" * CHUNK, headers=[auth, ("Upload-Offset", offset)])
    assert status == 503 and headers[b"Retry-After"] == b"2"  # bounded memory: at most MAX_QUEUED chunks wait
    transfers.UploadQueue(job.pk).take(timeout=1)  # the worker takes one: there is room again
    status, _, _ = await call(ann, "PATCH", job.pk, body=b"c" * CHUNK, headers=[auth, ("Upload-Offset", offset)])
    assert status == 204


async def test_an_ended_upload_takes_no_more_data(people):
    ann, _ = people
    job, token = await database_sync_to_async(make_job)(ann, size=10)
    await database_sync_to_async(Job.objects.filter(pk=job.pk).update)(status="failed")
    status, _, body = await call(
        ann, "PATCH", job.pk, body=b"x", headers=[("X-Upload-Token", token), ("Upload-Offset", 0)]
    )
    assert status == 409 and b"failed" in body


async def test_a_download_streams_once_per_token(people):
    ann, _ = people
    job, token = await database_sync_to_async(make_job)(ann, kind="volume.download", volume="disk.raw", length=6)
    worker = transfers.DownloadQueue(job.pk)
    worker.put(b"abc")
    worker.put(b"def")
    worker.end()
    status, headers, body = await call(ann, "GET", job.pk, query=f"token={token}")
    assert status == 200 and body == b"abcdef"
    assert headers[b"Content-Disposition"] == b'attachment; filename="disk.raw"'
    assert headers[b"Content-Length"] == b"6"
    status, _, body = await call(ann, "GET", job.pk, query=f"token={token}")
    assert status == 403 and b"used already" in body


async def test_a_failed_download_says_why(people):
    ann, _ = people
    job, token = await database_sync_to_async(make_job)(ann, kind="volume.download", volume="disk.raw")
    transfers.DownloadQueue(job.pk).end("the host went away")
    status, _, body = await call(ann, "GET", job.pk, query=f"token={token}")
    assert status == 502 and b"the host went away" in body


async def test_a_browser_that_leaves_stops_the_download(people):
    ann, _ = people
    job, token = await database_sync_to_async(make_job)(ann, kind="volume.download", volume="big.raw")
    worker = transfers.DownloadQueue(job.pk)
    worker.put(b"x" * 1000)
    path = f"/api/transfers/{job.pk}/?token={token}"
    communicator = HttpCommunicator(app_for(ann), "GET", path)
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(timeout=5)
    assert start["status"] == 200
    assert (await communicator.receive_output(timeout=5))["body"] == b"x" * 1000
    assert not worker.gone()
    await communicator.send_input({"type": "http.disconnect"})  # the browser closes the tab
    for _ in range(50):
        if worker.gone():
            break
        await asyncio.sleep(0.05)
    assert worker.gone()  # the worker sees it and stops reading the volume
    await communicator.wait(timeout=5)

"""JSON API for jobs: the list (filtered like the jobs page), one job with its timeline, cancel."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from core import access
from core.filters import LenientFilterBackend

from . import engine
from .models import Job
from .selectors import JobFilterSet, job_get
from .serializers import JobDetailSerializer, JobSerializer

_ID = [OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)]


class JobPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


def job_for(request, pk, action: str = access.VIEW, what: str = "") -> Job:
    """The job (404 JSON if there is none) if the caller may do ``action`` to it (403 JSON if not)."""
    job = job_get(job_id=pk)
    access.require(request.user, action, job, what=what)
    return job


@extend_schema_view(retrieve=extend_schema(parameters=_ID), cancel=extend_schema(parameters=_ID))
class JobViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Jobs: every operation, who asked, and how it ended."""

    serializer_class = JobSerializer
    filter_backends = [LenientFilterBackend]
    filterset_class = JobFilterSet
    pagination_class = JobPagination

    def get_queryset(self):
        return access.visible_jobs(self.request.user, Job.objects.select_related("target_host")).order_by(
            "-queued_at", "-id"
        )

    @extend_schema(responses=JobDetailSerializer)
    def retrieve(self, request, pk=None):
        return Response(JobDetailSerializer(job_for(request, pk)).data)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = engine.job_cancel(job=job_for(request, pk), user=request.user)
        return Response(JobSerializer(job).data)

"""Every URL of the site: each app's pages and API, the live socket lives in dashboard.routing."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from accounts.api import TokenViewSet
from audit.api import AuditEventViewSet
from core import api
from dashboard import views
from hosts.api import HostViewSet
from jobs.api import JobViewSet
from networks.api import NetworkViewSet, VMNicsView
from provisioning.api import (
    HostCapabilitiesView,
    PresetsView,
    TemplateDeployView,
    TemplateListView,
    VMCloneView,
    VMCreateView,
    VMDefineView,
    VMDefinitionView,
    VMHardwareView,
    VMTemplateView,
)
from storage.api import PoolViewSet, VolumeViewSet
from vms.api import VMViewSet
from vms.views import fleet

router = DefaultRouter(trailing_slash=True)
router.include_format_suffixes = False  # one URL per endpoint (no .json twins): a smaller surface
router.register("hosts", HostViewSet, basename="api-host")
router.register("vms", VMViewSet, basename="api-vm")
router.register("jobs", JobViewSet, basename="api-job")
router.register("pools", PoolViewSet, basename="api-pool")
router.register("volumes", VolumeViewSet, basename="api-volume")
router.register("networks", NetworkViewSet, basename="api-network")
router.register("audit", AuditEventViewSet, basename="api-audit")
router.register("tokens", TokenViewSet, basename="api-token")

handler403 = "core.middleware.permission_denied"

urlpatterns = [
    path("", fleet, name="fleet"),
    # migration and console pages and API sit under /vms/, /jobs/, /hosts/ and /api/: before those
    path("", include("migration.urls")),
    path("", include("console.urls")),
    path("", include("storage.urls")),
    path("", include("networks.urls")),
    path("", include("provisioning.urls")),
    path("", include("provisioning.template_urls")),
    path("", include("snapshots.urls")),
    path("hosts/", include("hosts.urls")),
    path("vms/", include("vms.urls")),
    path("jobs/", include("jobs.urls")),
    path("audit/", include("audit.urls")),
    path("account/", include("accounts.urls")),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("api/vms/<uuid:uuid>/nics/", VMNicsView.as_view(), name="api-vm-nics"),
    path("api/vms/create/", VMCreateView.as_view(), name="api-vm-create"),
    path("api/vms/define/", VMDefineView.as_view(), name="api-vm-define"),
    path("api/vms/<uuid:uuid>/definition/", VMDefinitionView.as_view(), name="api-vm-definition"),
    path("api/vms/<uuid:uuid>/hardware/<str:change>/", VMHardwareView.as_view(), name="api-vm-hardware"),
    path("api/vms/<uuid:uuid>/template/", VMTemplateView.as_view(), name="api-vm-template"),
    path("api/templates/", TemplateListView.as_view(), name="api-templates"),
    path("api/templates/<uuid:uuid>/deploy/", TemplateDeployView.as_view(), name="api-template-deploy"),
    path("api/vms/<uuid:uuid>/clone/", VMCloneView.as_view(), name="api-vm-clone"),
    path("api/os-presets/", PresetsView.as_view(), name="api-os-presets"),
    path("api/hosts/<int:pk>/capabilities/", HostCapabilitiesView.as_view(), name="api-host-capabilities"),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script as a file: no inline script, so the CSP holds on it too.
    path("api/docs/", login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="swagger-ui"),
    re_path(r"^api/", api.not_found, name="api-not-found"),  # last: unknown API URLs get JSON too
    path("admin/", admin.site.urls),
]

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from convergence import health
from convergence.api.exceptions import handler404 as json_not_found

admin.site.site_header = "Convergence administration"
admin.site.site_title = "Convergence admin"
admin.site.index_title = "Control plane"

urlpatterns = [
    path("health", health.HealthApi.as_view(), name="health"),
    path("health/ready", health.ReadinessApi.as_view(), name="health-ready"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include("tenants.urls")),
    path("api/v1/", include("pipelines.urls")),
    path("api/v1/", include("billing.urls")),
    path("admin/", admin.site.urls),
    # Anything else is a JSON 404 in the envelope, whatever DEBUG says.
    re_path(r"^.*$", json_not_found),
]

handler400 = "convergence.api.exceptions.handler400"
handler403 = "convergence.api.exceptions.handler403"
handler404 = "convergence.api.exceptions.handler404"
handler500 = "convergence.api.exceptions.handler500"

from __future__ import annotations

from django.urls import path

from billing import apis

urlpatterns = [
    path("tenants/<str:tenant_id>/costs", apis.CostApi.as_view(), name="tenant-costs"),
    path("tenants/<str:tenant_id>/sources", apis.SourceCollectionApi.as_view(), name="tenant-sources"),
    path(
        "tenants/<str:tenant_id>/sources/<str:provider>",
        apis.SourceDetailApi.as_view(),
        name="tenant-source-detail",
    ),
]

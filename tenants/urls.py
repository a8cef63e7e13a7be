from __future__ import annotations

from django.urls import path

from tenants import apis

urlpatterns = [
    path("admin/bootstrap", apis.BootstrapApi.as_view(), name="admin-bootstrap"),
    path("admin/tenants", apis.TenantCollectionApi.as_view(), name="admin-tenants"),
    path("admin/tenants/<str:tenant_id>", apis.TenantDetailApi.as_view(), name="admin-tenant-detail"),
    path("admin/api-keys", apis.ApiKeyCollectionApi.as_view(), name="admin-api-keys"),
    path("admin/api-keys/<str:key_hash>", apis.ApiKeyDetailApi.as_view(), name="admin-api-key-detail"),
    path("tenants/<str:tenant_id>", apis.TenantSelfApi.as_view(), name="tenant-detail"),
    path(
        "tenants/<str:tenant_id>/credentials",
        apis.CredentialCollectionApi.as_view(),
        name="tenant-credentials",
    ),
    path(
        "tenants/<str:tenant_id>/credentials/<str:credential_id>",
        apis.CredentialDetailApi.as_view(),
        name="tenant-credential-detail",
    ),
]

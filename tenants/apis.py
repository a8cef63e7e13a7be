"""Admin API (tenants, keys, bootstrap) and the tenant's own profile endpoint."""

from __future__ import annotations

import logging
import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from convergence.api.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from convergence.api.pagination import PageNumberPagination
from convergence.api.schema import PAGE_PARAMETERS, error_responses, paginated_response
from convergence.api.serializers import StrictInputSerializer, validated_data
from convergence.kms import KmsError
from tenants import selectors, services
from tenants.authentication import MAX_USER_ID_LENGTH, AdminApi, TenantApi
from tenants.models import (
    TENANT_ID_JSON_PATTERN,
    TENANT_ID_PATTERN,
    CloudProvider,
    PlanCode,
    SubscriptionStatus,
)
from tenants.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyOutputSerializer,
    CredentialOutputSerializer,
    TenantOutputSerializer,
    api_key_created_representation,
    credential_representation,
    tenant_representation,
)

logger = logging.getLogger(__name__)


class AdminKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.AdminKeyAuthentication"
    name = "AdminKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "X-Admin-Key"}


class TenantKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.TenantKeyAuthentication"
    name = "TenantKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "X-API-Key"}


# Every authenticated endpoint reads the optional audit header (400 when it is too long).
USER_ID_HEADER = OpenApiParameter(
    "X-User-ID",
    {"type": "string", "maxLength": MAX_USER_ID_LENGTH, "pattern": "^[ -~]*$"},
    OpenApiParameter.HEADER,
    required=False,
    description=f"Who is behind the request (audit only; at most {MAX_USER_ID_LENGTH} printable characters).",
)
KEY_HASH_PATTERN = r"^[0-9a-f]{64}$"
TENANT_ID_SCHEMA = {"type": "string", "pattern": TENANT_ID_JSON_PATTERN, "maxLength": 50}
TENANT_ID_PATH = OpenApiParameter("tenant_id", TENANT_ID_SCHEMA, OpenApiParameter.PATH)


@extend_schema_field(TENANT_ID_SCHEMA)
class TenantIdField(serializers.CharField):
    """A tenant id in a request body. The view checks the pattern itself (400 ``invalid_tenant_id``
    on create, 404 elsewhere); the schema documents it. Whitespace is kept, so ``"acme\\n"`` is
    refused rather than quietly becoming ``acme``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


def _tenant_or_404(tenant_id: str) -> Any:
    tenant = selectors.tenant_get(tenant_id=tenant_id) if re.fullmatch(TENANT_ID_PATTERN, tenant_id) else None
    if tenant is None:
        raise NotFound(f"Tenant {tenant_id!r} not found" if len(tenant_id) <= 50 else "Tenant not found")
    return tenant


class BootstrapApi(AdminApi):
    @extend_schema_serializer(component_name="BootstrapInput")
    class InputSerializer(StrictInputSerializer):
        force_recreate_dataset = serializers.BooleanField(default=False)
        force_recreate_tables = serializers.BooleanField(default=False)

    @extend_schema_serializer(component_name="BootstrapResult")
    class OutputSerializer(serializers.Serializer):
        status = serializers.CharField()
        dataset_created = serializers.BooleanField()
        tables_created = serializers.IntegerField()
        tables_existing = serializers.IntegerField()
        message = serializers.CharField()

    @extend_schema(
        operation_id="admin_bootstrap",
        parameters=[USER_ID_HEADER],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 503)},
    )
    def post(self, request: Request) -> Response:
        data = validated_data(self.InputSerializer, request.data)
        try:
            result = services.bootstrap_run(actor=self.actor(request), **data)
        except RuntimeError as exc:
            raise ServiceUnavailable(f"Bootstrap failed: {exc}") from exc
        return Response(self.OutputSerializer(result).data)


class TenantCollectionApi(AdminApi):
    @extend_schema_serializer(component_name="TenantCreateInput")
    class InputSerializer(StrictInputSerializer):
        tenant_id = TenantIdField(max_length=200)
        description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
        contact_email = serializers.EmailField(required=False, allow_blank=True, default="")
        plan = serializers.ChoiceField(choices=PlanCode.choices, required=False, default=PlanCode.STARTER)
        subscription_status = serializers.ChoiceField(
            choices=[SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIAL],
            required=False,
            default=SubscriptionStatus.ACTIVE,
        )

    @extend_schema(
        operation_id="admin_tenants_list",
        parameters=[*PAGE_PARAMETERS, USER_ID_HEADER],
        responses={
            200: paginated_response("PaginatedTenantList", TenantOutputSerializer(many=True)),
            **error_responses(400, 401, 404),
        },
    )
    def get(self, request: Request) -> Response:
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(selectors.tenant_list(), request, view=self)
        return paginator.get_paginated_response([tenant_representation(tenant) for tenant in page or []])

    @extend_schema(
        operation_id="admin_tenants_create",
        parameters=[USER_ID_HEADER],
        request=InputSerializer,
        responses={201: TenantOutputSerializer, **error_responses(400, 401, 409, 503)},
    )
    def post(self, request: Request) -> Response:
        data = validated_data(self.InputSerializer, request.data)
        tenant_id = data["tenant_id"]
        if not re.fullmatch(TENANT_ID_PATTERN, tenant_id):
            raise InvalidRequest(
                "tenant_id must be 3-50 characters: lowercase letters, digits and _, starting with a letter",
                code="invalid_tenant_id",
                details={
                    "tenant_id": ["3-50 characters: lowercase letters, digits and _, starting with a letter."]
                },
            )
        try:
            tenant = services.tenant_create(actor=self.actor(request), **data)
        except services.TenantExistsError as exc:
            raise Conflict(f"Tenant {tenant_id!r} already exists", code="tenant_exists") from exc
        except DjangoValidationError as exc:
            raise InvalidRequest(
                "Invalid tenant_id", code="invalid_tenant_id", details={"tenant_id": exc.messages}
            ) from exc
        except services.OnboardingError as exc:
            raise ServiceUnavailable(
                "Could not create the tenant's warehouse dataset; nothing was created"
            ) from exc
        return Response(tenant_representation(tenant), status=status.HTTP_201_CREATED)


class TenantDetailApi(AdminApi):
    @extend_schema_serializer(component_name="TenantUpdateInput")
    class InputSerializer(StrictInputSerializer):
        description = serializers.CharField(max_length=500, required=False, allow_blank=True)
        contact_email = serializers.EmailField(required=False, allow_blank=True)
        plan = serializers.ChoiceField(choices=PlanCode.choices, required=False)
        subscription_status = serializers.ChoiceField(choices=SubscriptionStatus.choices, required=False)

    @extend_schema(
        operation_id="admin_tenants_get",
        parameters=[TENANT_ID_PATH, USER_ID_HEADER],
        responses={200: TenantOutputSerializer, **error_responses(400, 401, 404)},
    )
    def get(self, request: Request, tenant_id: str) -> Response:
        return Response(tenant_representation(_tenant_or_404(tenant_id)))

    @extend_schema(
        operation_id="admin_tenants_update",
        parameters=[TENANT_ID_PATH, USER_ID_HEADER],
        request=InputSerializer,
        responses={200: TenantOutputSerializer, **error_responses(400, 401, 404)},
    )
    def patch(self, request: Request, tenant_id: str) -> Response:
        tenant = _tenant_or_404(tenant_id)
        data = validated_data(self.InputSerializer, request.data)
        tenant = services.tenant_update(tenant=tenant, actor=self.actor(request), **data)
        return Response(tenant_representation(tenant))


class ApiKeyCollectionApi(AdminApi):
    @extend_schema_serializer(component_name="ApiKeyCreateInput")
    class InputSerializer(StrictInputSerializer):
        tenant_id = TenantIdField(max_length=200)
        description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    @extend_schema(
        operation_id="admin_api_keys_list",
        parameters=[
            OpenApiParameter(
                "tenant_id", TENANT_ID_SCHEMA, required=False, description="Only this tenant's keys"
            ),
            *PAGE_PARAMETERS,
            USER_ID_HEADER,
        ],
        responses={
            200: paginated_response("PaginatedApiKeyList", ApiKeyOutputSerializer(many=True)),
            **error_responses(400, 401, 404),
        },
    )
    def get(self, request: Request) -> Response:
        tenant_id = request.query_params.get("tenant_id")
        if tenant_id is not None:
            _tenant_or_404(tenant_id)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(selectors.api_key_list(tenant_id=tenant_id), request, view=self)
        return paginator.get_paginated_response(ApiKeyOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="admin_api_keys_create",
        parameters=[USER_ID_HEADER],
        request=InputSerializer,
        responses={201: ApiKeyCreatedSerializer, **error_responses(400, 401, 404)},
    )
    def post(self, request: Request) -> Response:
        data = validated_data(self.InputSerializer, request.data)
        tenant = _tenant_or_404(data["tenant_id"])
        try:
            key, raw = services.api_key_create(
                tenant=tenant,
                actor=self.actor(request),
                description=data["description"],
                expires_at=data["expires_at"],
            )
        except ValueError as exc:
            raise InvalidRequest(str(exc), details={"expires_at": [str(exc)]}) from exc
        return Response(api_key_created_representation(key, raw), status=status.HTTP_201_CREATED)


class ApiKeyDetailApi(AdminApi):
    @extend_schema_serializer(component_name="ApiKeyRevoked")
    class OutputSerializer(serializers.Serializer):
        tenant_api_key_hash = serializers.CharField(source="key_hash")
        is_active = serializers.BooleanField()
        revoked_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="admin_api_keys_revoke",
        parameters=[
            OpenApiParameter("key_hash", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=KEY_HASH_PATTERN),
            USER_ID_HEADER,
        ],
        responses={200: OutputSerializer, **error_responses(400, 401, 404)},
    )
    def delete(self, request: Request, key_hash: str) -> Response:
        key = (
            selectors.api_key_get_by_hash(key_hash=key_hash)
            if re.fullmatch(r"[0-9a-f]{64}", key_hash)
            else None
        )
        if key is None:
            raise NotFound("API key not found")
        key = services.api_key_revoke(key=key, actor=self.actor(request))
        return Response(self.OutputSerializer(key).data)


class TenantSelfApi(TenantApi):
    @extend_schema(
        operation_id="tenant_get",
        parameters=[TENANT_ID_PATH, USER_ID_HEADER],
        responses={200: TenantOutputSerializer, **error_responses(400, 401, 403)},
    )
    def get(self, request: Request, tenant_id: str) -> Response:
        return Response(tenant_representation(self.tenant(request)))


# --- cloud credentials ------------------------------------------------------------------------------

CREDENTIAL_NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,100}\Z"


class CredentialCollectionApi(TenantApi):
    @extend_schema_serializer(component_name="CredentialCreateInput")
    class InputSerializer(StrictInputSerializer):
        provider = serializers.ChoiceField(choices=CloudProvider.choices)
        name = serializers.RegexField(CREDENTIAL_NAME_PATTERN, max_length=100, trim_whitespace=False)
        secret = serializers.JSONField(
            help_text="The provider's secret as a JSON object of at most 64 KiB: AWS access_key_id + "
            "secret_access_key (optional session_token, region); Azure connection_string or account_name + "
            "account_key | sas_token; GCP a service account key. Never returned."
        )

    @extend_schema(
        operation_id="tenant_credentials_list",
        parameters=[TENANT_ID_PATH, *PAGE_PARAMETERS, USER_ID_HEADER],
        responses={
            200: paginated_response("PaginatedCredentialList", CredentialOutputSerializer(many=True)),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, tenant_id: str) -> Response:
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(
            selectors.credential_list(tenant=self.tenant(request)), request, view=self
        )
        return paginator.get_paginated_response([credential_representation(item) for item in page or []])

    @extend_schema(
        operation_id="tenant_credentials_create",
        parameters=[TENANT_ID_PATH, USER_ID_HEADER],
        request=InputSerializer,
        responses={201: CredentialOutputSerializer, **error_responses(400, 401, 403, 409, 413, 503)},
    )
    def post(self, request: Request, tenant_id: str) -> Response:
        from billing.sources import InvalidSource

        data = validated_data(self.InputSerializer, request.data)
        try:
            credential = services.credential_create(
                tenant=self.tenant(request), actor=self.actor(request), **data
            )
        except InvalidSource as exc:
            raise InvalidRequest("Invalid credential", details=exc.errors) from exc
        except KmsError as exc:
            # The message of a KMS failure may name keys or endpoints: log it, answer generically.
            logger.warning("credential encryption failed for tenant %s: %s", tenant_id, type(exc).__name__)
            raise ServiceUnavailable("The key management service is unavailable; try again later") from exc
        except services.CredentialExistsError as exc:
            raise Conflict(
                f"A {data['provider']} credential named {data['name']!r} already exists", code="conflict"
            ) from exc
        return Response(credential_representation(credential), status=status.HTTP_201_CREATED)


class CredentialDetailApi(TenantApi):
    @extend_schema(
        operation_id="tenant_credentials_delete",
        parameters=[
            TENANT_ID_PATH,
            OpenApiParameter("credential_id", {"type": "integer", "minimum": 1}, OpenApiParameter.PATH),
            USER_ID_HEADER,
        ],
        responses={204: None, **error_responses(400, 401, 403, 404, 409)},
    )
    def delete(self, request: Request, tenant_id: str, credential_id: str) -> Response:
        credential = (
            selectors.credential_get(tenant=self.tenant(request), credential_id=int(credential_id))
            if re.fullmatch(r"[1-9][0-9]{0,17}", credential_id)
            else None
        )
        if credential is None:
            raise NotFound("Credential not found")
        try:
            deleted = services.credential_delete(credential=credential, actor=self.actor(request))
        except services.CredentialInUseError as exc:
            raise Conflict(
                f"The credential is used by the {', '.join(exc.providers)} billing source(s); "
                "point those sources at another credential or delete them first",
                code="conflict",
                details={"sources": exc.providers},
            ) from exc
        if not deleted:  # a concurrent delete removed it after the lookup
            raise NotFound("Credential not found")
        return Response(status=status.HTTP_204_NO_CONTENT)

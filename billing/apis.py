"""Tenant billing endpoints."""

from __future__ import annotations

import logging
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from billing import costs
from billing import selectors as billing_selectors
from billing import services as billing_services
from billing.serializers import SourceOutputSerializer, source_representation
from billing.sources import InvalidSource
from convergence.api.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from convergence.api.schema import error_responses
from convergence.api.serializers import StrictInputSerializer, validated_data
from convergence.warehouse import WarehouseError
from tenants.apis import TENANT_ID_PATH, USER_ID_HEADER
from tenants.authentication import TenantApi
from tenants.models import CloudProvider

logger = logging.getLogger(__name__)

_GROUP_BY_PATTERN = (
    r"^(provider|service|sub_account|region|charge_category|tag:[^\x00-\x1f\x7f]{1,"
    + str(costs.MAX_TAG_KEY_LENGTH)
    + r"})$"
)
_MONEY_DESCRIPTION = "Exact decimal string (no exponent, no trailing zeros), in `currency`."
_COSTS_DESCRIPTION = f"""\
Billed and effective cost of the tenant's published FOCUS data (`focus_costs`), summed exactly.

- `start` and `end` are **both inclusive** UTC charge dates (`x_ChargeDate`, the UTC date of
  `ChargePeriodStart`); the range is at most {costs.MAX_RANGE_DAYS} days.
- `group_by` (optional): `provider` (`gcp`/`aws`/`azure`), `service` (ServiceName), `sub_account`
  (SubAccountId), `region` (RegionId), `charge_category` (ChargeCategory) or `tag:KEY` (the value of tag
  `KEY`, up to {costs.MAX_TAG_KEY_LENGTH} printable characters). Rows without a value (untagged rows for
  `tag:KEY`) form one group whose `key` is null. Without `group_by` every row's `key` is null.
- `granularity` (default `total`): `day` gives `period` `YYYY-MM-DD`, `month` gives `YYYY-MM`, `total`
  gives `period` null (one row per group over the whole range).
- Money is an exact decimal string, never a float. Rows are ordered by period, then key (null last).
- Costs are never added across currencies: when the range holds more than one `BillingCurrency`, the
  answer is 409 `mixed_currencies` (details list them) unless `currency` selects one. `currency` is null
  when the range has no cost (totals are then `"0"` and `rows` is empty), also before any data was loaded.
- Unknown, repeated or malformed parameters are 400 `invalid_parameters`, keyed by parameter name."""


@extend_schema_serializer(component_name="CostRow")
class _CostRowSerializer(serializers.Serializer):
    period = serializers.CharField(
        allow_null=True, help_text="`YYYY-MM-DD` (day), `YYYY-MM` (month) or null (total)."
    )
    key = serializers.CharField(allow_null=True, help_text="The group's value; null for rows without one.")
    billed_cost = serializers.CharField(help_text=_MONEY_DESCRIPTION)
    effective_cost = serializers.CharField(help_text=_MONEY_DESCRIPTION)


@extend_schema_serializer(component_name="CostReport")
class _CostReportSerializer(serializers.Serializer):
    currency = serializers.CharField(
        allow_null=True, help_text="ISO 4217 billing currency; null without cost."
    )
    start = serializers.DateField()
    end = serializers.DateField()
    group_by = serializers.CharField(allow_null=True)
    total_billed_cost = serializers.CharField(help_text=_MONEY_DESCRIPTION)
    total_effective_cost = serializers.CharField(help_text=_MONEY_DESCRIPTION)
    rows = _CostRowSerializer(many=True)


def _period_text(period: Any, granularity: costs.Granularity) -> str | None:
    if period is None or granularity is costs.Granularity.TOTAL:
        return None
    if granularity is costs.Granularity.MONTH:
        return f"{period.year:04d}-{period.month:02d}"
    return str(period.isoformat())


def _cost_report_representation(report: costs.CostReport) -> dict[str, Any]:
    return {
        "currency": report.currency,
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "group_by": report.group_by.label,
        "total_billed_cost": costs.money_text(report.total_billed_cost),
        "total_effective_cost": costs.money_text(report.total_effective_cost),
        "rows": [
            {
                "period": _period_text(row.period, report.granularity),
                "key": row.key,
                "billed_cost": costs.money_text(row.billed_cost),
                "effective_cost": costs.money_text(row.effective_cost),
            }
            for row in report.rows
        ],
    }


class CostApi(TenantApi):
    class FilterSerializer(StrictInputSerializer):
        start = serializers.DateField(input_formats=["%Y-%m-%d"])
        end = serializers.DateField(input_formats=["%Y-%m-%d"])
        group_by = serializers.CharField(required=False, max_length=200, trim_whitespace=False)
        granularity = serializers.ChoiceField(
            choices=[choice.value for choice in costs.Granularity], default=costs.Granularity.TOTAL.value
        )
        currency = serializers.RegexField(r"^[A-Z]{3}\Z", required=False)

    @extend_schema(
        operation_id="tenant_costs",
        description=_COSTS_DESCRIPTION,
        parameters=[
            TENANT_ID_PATH,
            OpenApiParameter("start", {"type": "string", "format": "date"}, required=True),
            OpenApiParameter("end", {"type": "string", "format": "date"}, required=True),
            OpenApiParameter("group_by", {"type": "string", "pattern": _GROUP_BY_PATTERN}, required=False),
            OpenApiParameter(
                "granularity",
                {
                    "type": "string",
                    "enum": [choice.value for choice in costs.Granularity],
                    "default": "total",
                },
                required=False,
            ),
            OpenApiParameter(
                "currency",
                {"type": "string", "pattern": "^[A-Z]{3}$"},
                required=False,
                description="Only costs billed in this currency (needed when the range has several).",
            ),
        ],
        responses={200: _CostReportSerializer, **error_responses(400, 401, 403, 409, 503)},
    )
    def get(self, request: Request, tenant_id: str) -> Response:
        repeated = sorted(
            name for name in request.query_params if len(request.query_params.getlist(name)) > 1
        )
        if repeated:
            raise InvalidRequest(
                "Invalid query parameters",
                code="invalid_parameters",
                details={name: ["Given more than once."] for name in repeated},
            )
        serializer = self.FilterSerializer(data=request.query_params.dict())
        if not serializer.is_valid():
            raise InvalidRequest(
                "Invalid query parameters", code="invalid_parameters", details=dict(serializer.errors)
            )
        data = serializer.validated_data
        try:
            group_by = costs.group_by_parse(data.get("group_by"))
            costs.date_range_check(start=data["start"], end=data["end"])
        except costs.CostQueryError as exc:
            raise InvalidRequest(
                "Invalid query parameters", code="invalid_parameters", details={exc.field: [exc.message]}
            ) from exc
        try:
            report = costs.cost_report(
                tenant=self.tenant(request),
                start=data["start"],
                end=data["end"],
                group_by=group_by,
                granularity=costs.Granularity(data["granularity"]),
                currency=data.get("currency"),
            )
        except costs.MixedCurrenciesError as exc:
            raise Conflict(
                f"Costs in this range are in several currencies ({', '.join(exc.currencies)}); "
                "choose one with currency=",
                code="mixed_currencies",
                details={"currency": exc.currencies},
            ) from exc
        except WarehouseError as exc:
            logger.warning("cost query failed for tenant %s: %s", tenant_id, exc.message)
            raise ServiceUnavailable("The warehouse is unavailable; try again later") from exc
        return Response(_cost_report_representation(report))


# --- billing sources ------------------------------------------------------------------------------

_SOURCE_DESCRIPTION = """\
The tenant's billing export location for one provider, checked on save (400 `invalid_source`, details
keyed by `location` or `credential_id`):

- `file:///...` (any provider): must resolve, after symlinks, inside the server's
  `SOURCE_FILE_ROOT/{tenant_id}/` (the folder may not exist yet); `..` segments are refused.
- AWS `s3://bucket/prefix`; Azure `az://container/prefix` or
  `https://{account}.blob.core.windows.net/container/prefix` (or an address on the server's configured
  emulator endpoint): never any other host. Object-store sources need `credential_id`: the tenant's own
  credential of the same provider.
- GCP `project.dataset.table`: the billing export table; never one of Convergence's own datasets."""
PROVIDER_PATH = OpenApiParameter(
    "provider", {"type": "string", "enum": [choice.value for choice in CloudProvider]}, OpenApiParameter.PATH
)


def _provider_or_404(provider: str) -> str:
    if provider not in CloudProvider.values:
        raise NotFound("Unknown provider")
    return provider


class SourceCollectionApi(TenantApi):
    @extend_schema(
        operation_id="tenant_sources_list",
        parameters=[TENANT_ID_PATH, USER_ID_HEADER],
        responses={200: SourceOutputSerializer(many=True), **error_responses(400, 401, 403)},
    )
    def get(self, request: Request, tenant_id: str) -> Response:
        sources = billing_selectors.source_list(tenant=self.tenant(request))
        return Response([source_representation(source) for source in sources])


class SourceDetailApi(TenantApi):
    @extend_schema_serializer(component_name="SourceInput")
    class InputSerializer(StrictInputSerializer):
        location = serializers.CharField(max_length=2048, trim_whitespace=False)
        credential_id = serializers.IntegerField(
            required=False, allow_null=True, default=None, min_value=1, max_value=2**63 - 1
        )

    @extend_schema(
        operation_id="tenant_sources_put",
        description=_SOURCE_DESCRIPTION,
        parameters=[TENANT_ID_PATH, PROVIDER_PATH, USER_ID_HEADER],
        request=InputSerializer,
        responses={200: SourceOutputSerializer, **error_responses(400, 401, 403, 404)},
    )
    def put(self, request: Request, tenant_id: str, provider: str) -> Response:
        provider = _provider_or_404(provider)
        data = validated_data(self.InputSerializer, request.data)
        try:
            source = billing_services.source_upsert(
                tenant=self.tenant(request), actor=self.actor(request), provider=provider, **data
            )
        except InvalidSource as exc:
            raise InvalidRequest("Invalid source", code="invalid_source", details=exc.errors) from exc
        return Response(source_representation(source))

    @extend_schema(
        operation_id="tenant_sources_delete",
        parameters=[TENANT_ID_PATH, PROVIDER_PATH, USER_ID_HEADER],
        responses={204: None, **error_responses(400, 401, 403, 404)},
    )
    def delete(self, request: Request, tenant_id: str, provider: str) -> Response:
        provider = _provider_or_404(provider)
        if not billing_services.source_delete(
            tenant=self.tenant(request), actor=self.actor(request), provider=provider
        ):
            raise NotFound(f"No {provider} source is configured")
        return Response(status=status.HTTP_204_NO_CONTENT)

"""Rows for a tenant's ``focus_costs`` table in tests (only the columns the cost readers use)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any


def focus_row(
    provider: str,
    day: dt.date,
    billed: str,
    effective: str,
    *,
    service: str,
    sub_account: str | None,
    region: str | None,
    category: str = "Usage",
    tags: dict[str, str] | None = None,
    currency: str = "USD",
) -> dict[str, Any]:
    """A focus_costs row with the columns the cost API reads (the rest stay NULL)."""
    tags = tags or {}
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return {
        "x_Provider": provider,
        "x_ChargeDate": day,
        "ChargePeriodStart": start,
        "ChargePeriodEnd": start + dt.timedelta(days=1),
        "BilledCost": Decimal(billed),
        "EffectiveCost": Decimal(effective),
        "ListCost": Decimal(billed),
        "ContractedCost": Decimal(billed),
        "BillingCurrency": currency,
        "ServiceName": service,
        "SubAccountId": sub_account,
        "RegionId": region,
        "ChargeCategory": category,
        "Tags": json.dumps(tags),
        "x_TagList": [{"key": key, "value": value} for key, value in tags.items()],
        "x_RunId": "run-test",
    }

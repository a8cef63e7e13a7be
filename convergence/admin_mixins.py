"""Mixins shared by the apps' Django admin classes."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """Staff may list and view, never add, change or delete (for records written only by services, such
    as audit entries, runs, or objects validated and audited by the tenant API). Put it before
    ``admin.ModelAdmin`` in the bases."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

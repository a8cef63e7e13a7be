from __future__ import annotations

from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF page-number pagination with ``?page_size=`` capped at 500."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

"""The project's JSON parser: DRF's, except that a pathologically nested body is a 400, not a 500."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            # json's C decoder gives up at ~1,000 levels with RecursionError, which DRF does not catch;
            # no body this API accepts comes near that depth.
            raise ParseError("JSON parse error - nested too deeply") from None

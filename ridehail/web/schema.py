"""OpenAPI descriptions shared by every endpoint: the error bodies and which status codes can occur."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

DETAIL = inline_serializer("Detail", {"detail": serializers.CharField()})
FIELD_ERRORS = OpenApiResponse(
    inline_serializer("FieldErrors", {"field": serializers.ListField(child=serializers.CharField(), required=False)}),
    description="Invalid input: each field (or non_field_errors) with its messages; or a `detail` for a body "
    "that is not JSON.",
)

_ERRORS = {
    400: FIELD_ERRORS,
    401: OpenApiResponse(DETAIL, description="No valid credentials"),
    403: OpenApiResponse(DETAIL, description="Signed in, but not allowed (wrong role)"),
    404: OpenApiResponse(DETAIL, description="No such thing, or not yours"),
    405: OpenApiResponse(DETAIL, description="Method not allowed"),
    406: OpenApiResponse(DETAIL, description="Only JSON is served"),
    409: OpenApiResponse(DETAIL, description="Not possible in the current state"),
    413: OpenApiResponse(DETAIL, description="The body is too large"),
    415: OpenApiResponse(DETAIL, description="The body is not JSON"),
    429: OpenApiResponse(DETAIL, description="Rate limited; see Retry-After"),
    503: OpenApiResponse(DETAIL, description="The database or Redis is unavailable"),
}


def responses(success: dict, *codes: int) -> dict:
    """The success responses plus the error responses this endpoint can give."""
    return {**success, **{code: _ERRORS[code] for code in (*codes, 405, 406, 503)}}

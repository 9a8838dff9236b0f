"""Who may do what: the one definition of an operator, and the DRF permissions built on it."""

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from users.models import User


class AuthenticatedRequest(Request):
    """What a view behind `IsAuthenticated` receives: a request whose user signed in.

    For the type checker only (DRF builds a plain `Request`): annotating such a view's
    `request` with it types `request.user` as a `User`, not `User | AnonymousUser`.
    """

    user: User


def is_operator(user: Any) -> bool:
    """Operators are active staff: they see the dashboard and the operations endpoints."""
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class IsOperator(BasePermission):
    message = "Only staff may see this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return is_operator(request.user)


class IsDriver(BasePermission):
    message = "Only drivers have an availability status."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_driver)


class IsRiderOrOperator(BasePermission):
    message = "Only riders and staff may look for drivers."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return is_operator(user) or bool(user and user.is_authenticated and not user.is_driver)

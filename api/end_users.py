"""The end user a request is made for: its principals, or a 400 when the key requires them."""

from __future__ import annotations

from fastapi import HTTPException, status

from core.tenancy import TenantContext

MISSING_PRINCIPALS = (
    "this API key requires the end user's principals: send `principals` (the user and group ids "
    "the end user holds; [] for an end user in no group). Without them every restricted "
    "document would be searched."
)


def end_user_principals(tenant: TenantContext, principals: list[str] | None) -> list[str] | None:
    """`principals` as given (already checked by the schema's Principal rule); a 400 when they
    are missing and the key (or its tenant) requires them, so an app that forgets the field
    fails closed instead of reading every restricted document."""
    if principals is None and tenant.require_principals:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, MISSING_PRINCIPALS)
    return principals

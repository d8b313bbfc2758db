"""Users, roles and API tokens of a tenant: creation, password checks, token lookup.

This package stores and checks credentials; it does not know about HTTP (the web layer
reads sessions and headers and asks here). Passwords are hashed with werkzeug.security;
API tokens are random secrets of which only the SHA-256 is stored.
"""

from crm_journeys.auth.accounts import (
    ROLES,
    Principal,
    authenticate,
    can,
    create_api_token,
    create_user,
    token_principal,
)

__all__ = ["Principal", "ROLES", "authenticate", "can", "create_api_token", "create_user", "token_principal"]

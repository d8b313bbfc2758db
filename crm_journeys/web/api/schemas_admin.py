"""marshmallow schemas of the admin endpoints (users and API tokens); apart from
``schemas`` to keep each module readable."""

from __future__ import annotations

from marshmallow import fields, validate

from crm_journeys.storage.auth_models import ROLES
from crm_journeys.web.api.schemas import In, Out

_ROLE = validate.OneOf(ROLES)


class UserOut(Out):
    id = fields.Integer()
    email = fields.String()
    role = fields.String()
    active = fields.Boolean()
    created_at = fields.DateTime()
    last_login_at = fields.DateTime(allow_none=True)


class UserCreateIn(In):
    email = fields.Email(required=True)
    role = fields.String(required=True, validate=_ROLE)
    password = fields.String(validate=validate.Length(min=8, max=200),
                             metadata={"description": "left out: a temporary password is made and returned once"})


class UserCreatedOut(UserOut):
    temporary_password = fields.String(allow_none=True,
                                       metadata={"description": "only when no password was given; shown once"})


class UserUpdateIn(In):
    role = fields.String(required=True, validate=_ROLE)


class TokenOut(Out):
    id = fields.Integer()
    name = fields.String()
    prefix = fields.String(metadata={"description": "the first characters, to tell tokens apart"})
    role = fields.String()
    revoked = fields.Boolean()
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True)


class TokenCreateIn(In):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    role = fields.String(load_default="editor", validate=_ROLE)


class TokenCreatedOut(TokenOut):
    token = fields.String(metadata={"description": "the secret; shown only in this response"})

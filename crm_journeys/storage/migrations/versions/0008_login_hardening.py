"""hardening: session versions, forced password change, sign-in throttling, sealed secrets

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-04 19:00:00

``cj_user.session_version`` is bumped on logout and password change, so a session cookie
that carries an older number stops working on every process at once.
``cj_user.must_change_password`` marks temporary passwords (invited users).
``cj_login_throttle`` counts failed sign-ins per account and per client address, in the
database, so the limit holds across web processes.
The tenant's webhook secret and journeys' trigger secrets are sealed with the app's key
(``crm_journeys.secrets.SealedString``); ``trigger_secret`` widens to hold the token.
"""
from alembic import op
import sqlalchemy as sa
import crm_journeys.storage.models


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cj_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    if op.get_bind().dialect.name == 'postgresql':  # SQLite does not enforce lengths: no rebuild there
        op.alter_column('cj_journey', 'trigger_secret', type_=sa.String(length=200))
    _seal_existing()
    op.create_table('cj_login_throttle',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', crm_journeys.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_cj_login_throttle'))
    )


def _seal_existing() -> None:
    """Seal the webhook and trigger secrets stored in plain text before this revision."""
    from crm_journeys.secrets import SEALED, seal

    conn = op.get_bind()
    for table, column in (('cj_tenant', 'webhook_secret'), ('cj_journey', 'trigger_secret')):
        rows = conn.execute(sa.text(f"SELECT id, {column} FROM {table}")).all()
        for row_id, value in rows:
            if value and not value.startswith(SEALED):
                conn.execute(sa.text(f"UPDATE {table} SET {column} = :v WHERE id = :id"),
                             {"v": seal(value), "id": row_id})


def downgrade() -> None:
    op.drop_table('cj_login_throttle')
    with op.batch_alter_table('cj_user', schema=None) as batch_op:
        batch_op.drop_column('must_change_password')
        batch_op.drop_column('session_version')

"""tenant: the last connector failure, where its admin sees it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:00:00

A sync or webhook fetch that fails for one tenant (the host down, a changed answer, a
revoked token) is recorded on that tenant's row, ``connector_error`` with its time, and
cleared by the next sync that completes. The worker goes on with every other tenant.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('cj_tenant', sa.Column('connector_error', sa.Text(), nullable=True))
    op.add_column('cj_tenant', sa.Column('connector_error_at', sa.DateTime(timezone=True),
                                         nullable=True))


def downgrade() -> None:
    # in place (SQLite >= 3.35 too): rebuilding cj_tenant would cascade to every child row
    for column in ('connector_error_at', 'connector_error'):
        op.execute(f'ALTER TABLE cj_tenant DROP COLUMN {column}')

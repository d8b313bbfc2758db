"""outbox: a partial index over failing rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:00:00

``ix_cj_outbox_failing`` holds the outbox rows that are dead or being retried, led by the
tenant and ordered by id: what the action-errors list (newest first), its counts, its
filter choices and the nav badge read (``runtime.action_errors``), instead of every row
the tenant ever sent. Rows that succeed on their first attempt never enter it.

On PostgreSQL the index is built with ``CREATE INDEX CONCURRENTLY``, outside the
migration's transaction, so that the outbox keeps taking writes while it builds; a build
that failed leaves an invalid index behind, which the next upgrade drops first.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

NAME = 'ix_cj_outbox_failing'
FAILING = "status = 'dead' OR (status = 'pending' AND attempts > 0)"
COLUMNS = ['tenant_id', 'id', 'status', 'action']


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        op.create_index(NAME, 'cj_outbox', COLUMNS, sqlite_where=sa.text(FAILING))
        return
    with op.get_context().autocommit_block():
        op.drop_index(NAME, table_name='cj_outbox', postgresql_concurrently=True, if_exists=True)
        op.create_index(NAME, 'cj_outbox', COLUMNS, postgresql_where=sa.text(FAILING),
                        postgresql_concurrently=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        op.drop_index(NAME, table_name='cj_outbox')
        return
    with op.get_context().autocommit_block():
        op.drop_index(NAME, table_name='cj_outbox', postgresql_concurrently=True)

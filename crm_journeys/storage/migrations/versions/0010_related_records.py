"""contacts: the related records journeys read

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-04 19:00:00

``cj_contact.records`` holds, per table (order, lead, a custom table), the last record of
that table the host reported for the contact (``record_changed``), so that a "record
updated" starting point's filter and an if/then can read ``record.<table>.<field>``.
Existing contacts start with none.
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('cj_contact', sa.Column('records', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place; alembic's batch way would rebuild cj_contact,
    # whose instances, wake-ups and step logs refer to it
    op.execute('ALTER TABLE cj_contact DROP COLUMN records')

"""outbox: delivery lanes, parked and paced in the database

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-04 19:00:00

Each outbox row names its lane (tenant and host: ``<tenant>:crm``, ``<tenant>:smtp``,
``<tenant>:<webhook host>``), and ``cj_lane`` holds what every worker must agree on about a
lane: parked until when (its host is down or answered 429 with Retry-After) and its
delivery budget per minute. Rows still to send get their tenant's CRM lane.
"""
from alembic import op
import sqlalchemy as sa

from crm_journeys.storage.models import UtcDateTime


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('cj_outbox', sa.Column('lane', sa.String(200), nullable=False, server_default=''))
    op.execute(sa.text("UPDATE cj_outbox SET lane = CAST(tenant_id AS VARCHAR(20)) || :host "
                       "WHERE status = 'pending'").bindparams(host=':crm'))
    op.create_table(
        'cj_lane',
        sa.Column('key', sa.String(200), nullable=False),
        sa.Column('parked_until', UtcDateTime(timezone=True), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('budget_per_minute', sa.Integer(), nullable=True),
        sa.Column('window_start', UtcDateTime(timezone=True), nullable=True),
        sa.Column('used', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_cj_lane')),
    )


def downgrade() -> None:
    op.drop_table('cj_lane')
    with op.batch_alter_table('cj_outbox') as batch:
        batch.drop_column('lane')

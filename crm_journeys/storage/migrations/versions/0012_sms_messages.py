"""SMS: one row per text a journey sends

Revision ID: 0012
Revises: 0007
Create Date: 2026-12-04 19:00:00

``cj_sms_message`` is the local record of each text (``storage.sms_models``): written
before Twilio is asked, so a retry looks an attempt up instead of texting twice, and
holding Twilio's sid, which status callbacks and replies are matched against.
"""
from alembic import op
import sqlalchemy as sa
import crm_journeys.storage.models


revision = '0012'
down_revision = '0009'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
WHEN = crm_journeys.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('cj_sms_message',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('tenant_id', ID, nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('contact_id', ID, nullable=False),
    sa.Column('journey_id', ID, nullable=True),
    sa.Column('sms_id', sa.String(length=80), nullable=False),
    sa.Column('to_number', sa.String(length=20), nullable=False),
    sa.Column('sid', sa.String(length=40), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('segments', sa.Integer(), nullable=False),
    sa.Column('marketing', sa.Boolean(), nullable=False),
    sa.Column('body_sha256', sa.String(length=64), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('created_at', WHEN, nullable=False),
    sa.Column('attempted_at', WHEN, nullable=True),
    sa.Column('updated_at', WHEN, nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['cj_contact.id'], name=op.f('fk_cj_sms_message_contact_id_cj_contact'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['cj_tenant.id'], name=op.f('fk_cj_sms_message_tenant_id_cj_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cj_sms_message')),
    sa.UniqueConstraint('tenant_id', 'idempotency_key', name=op.f('uq_cj_sms_message_tenant_id_idempotency_key'))
    )
    op.create_index('ix_cj_sms_message_sid', 'cj_sms_message', ['tenant_id', 'sid'], unique=False)
    op.create_index('ix_cj_sms_message_to', 'cj_sms_message', ['tenant_id', 'to_number', 'id'], unique=False)
    op.create_index('ix_cj_sms_message_updated', 'cj_sms_message', ['tenant_id', 'updated_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_cj_sms_message_updated', table_name='cj_sms_message')
    op.drop_index('ix_cj_sms_message_to', table_name='cj_sms_message')
    op.drop_index('ix_cj_sms_message_sid', table_name='cj_sms_message')
    op.drop_table('cj_sms_message')

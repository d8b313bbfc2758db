"""Outbox rows by contact: a contact's rows never run at once, across workers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 22:20:00

A row is claimable only while no other row of its contact is in flight (pending with a
live lease, anywhere); the claim asks that per candidate row through this index.
"""
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_cj_outbox_contact', 'cj_outbox', ['contact_id', 'status'])


def downgrade() -> None:
    op.drop_index('ix_cj_outbox_contact', table_name='cj_outbox')

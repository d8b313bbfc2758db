"""retention and HubSpot portals

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:30:00

- ``cj_tenant.portal_id``: the HubSpot account a tenant is installed on, a real column
  (it lived in the ``settings`` JSON) with a unique index on ``(connector, portal_id)``.
  Filled here from the JSON; when two tenants claimed one account, the older keeps it
  and the others stay NULL (logged) until ``crm-journeys hubspot backfill-portals``
  reports the conflict.
- ``cj_instance.history_pruned_at`` and a partial index over ended instances whose step
  logs are still there, ``cj_step_rollup`` for the counts retention folds away, and
  partial indexes over processed inbox rows and done outbox rows, led by the tenant:
  what ``runtime.retention`` reads.

Only indexes and added columns on existing tables: on SQLite, anything that rebuilds
``cj_tenant`` would drop it, and with foreign keys on, dropping it cascades.
"""
import logging

from alembic import op
import sqlalchemy as sa
import crm_journeys.storage.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
ENDED_UNPRUNED = "ended_at IS NOT NULL AND history_pruned_at IS NULL"
PROCESSED = "processed_at IS NOT NULL"
DONE = "done_at IS NOT NULL"
ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.add_column('cj_tenant', sa.Column('portal_id', sa.String(length=40), nullable=True))
    _portals_from_settings()
    op.create_index('uq_cj_tenant_connector_portal_id', 'cj_tenant', ['connector', 'portal_id'],
                    unique=True)
    op.add_column('cj_instance', sa.Column(
        'history_pruned_at', crm_journeys.storage.models.UtcDateTime(timezone=True), nullable=True))
    op.create_index('ix_cj_instance_ended', 'cj_instance', ['tenant_id', 'ended_at'],
                    sqlite_where=sa.text(ENDED_UNPRUNED), postgresql_where=sa.text(ENDED_UNPRUNED))
    op.create_index('ix_cj_inbox_processed', 'cj_inbox', ['tenant_id', 'processed_at'],
                    sqlite_where=sa.text(PROCESSED), postgresql_where=sa.text(PROCESSED))
    op.create_index('ix_cj_outbox_done', 'cj_outbox', ['tenant_id', 'done_at'],
                    sqlite_where=sa.text(DONE), postgresql_where=sa.text(DONE))
    op.create_table('cj_step_rollup',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('tenant_id', ID, nullable=False),
    sa.Column('journey_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('step', sa.String(length=80), nullable=False),
    sa.Column('branch', sa.String(length=80), nullable=False),
    sa.Column('count', ID, nullable=False),
    sa.Column('updated_at', crm_journeys.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['journey_id'], ['cj_journey.id'], name=op.f('fk_cj_step_rollup_journey_id_cj_journey'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['cj_tenant.id'], name=op.f('fk_cj_step_rollup_tenant_id_cj_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cj_step_rollup')),
    sa.UniqueConstraint('journey_id', 'kind', 'step', 'branch', name=op.f('uq_cj_step_rollup_journey_id_kind_step_branch'))
    )
    op.create_index(op.f('ix_cj_step_rollup_tenant_id'), 'cj_step_rollup', ['tenant_id'], unique=False)


def _portals_from_settings() -> None:
    """Copy ``settings["portal_id"]`` of HubSpot tenants into the column, oldest first."""
    tenant = sa.table('cj_tenant', sa.column('id', ID), sa.column('connector', sa.String),
                      sa.column('settings', sa.JSON), sa.column('slug', sa.String),
                      sa.column('portal_id', sa.String))
    conn = op.get_bind()
    rows = conn.execute(sa.select(tenant.c.id, tenant.c.slug, tenant.c.settings)
                        .where(tenant.c.connector == 'hubspot').order_by(tenant.c.id)).all()
    owner: dict[str, str] = {}
    for tenant_id, slug, settings in rows:
        portal = str((settings or {}).get('portal_id') or '').strip()[:40]
        if not portal:
            continue
        if portal in owner:
            log.warning("HubSpot account %s is claimed by tenants %r and %r: kept for %r; "
                        "run `crm-journeys hubspot backfill-portals`", portal, owner[portal],
                        slug, owner[portal])
            continue
        owner[portal] = slug
        conn.execute(tenant.update().where(tenant.c.id == tenant_id).values(portal_id=portal))


def downgrade() -> None:
    op.drop_index(op.f('ix_cj_step_rollup_tenant_id'), table_name='cj_step_rollup')
    op.drop_table('cj_step_rollup')
    op.drop_index('ix_cj_outbox_done', table_name='cj_outbox')
    op.drop_index('ix_cj_inbox_processed', table_name='cj_inbox')
    op.drop_index('ix_cj_instance_ended', table_name='cj_instance')
    op.drop_index('uq_cj_tenant_connector_portal_id', table_name='cj_tenant')
    # SQLite >= 3.35 drops a column in place; alembic's way would rebuild the table
    for table, column in (('cj_instance', 'history_pruned_at'), ('cj_tenant', 'portal_id')):
        op.execute(f'ALTER TABLE {table} DROP COLUMN {column}')

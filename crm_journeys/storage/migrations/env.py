"""Alembic environment: the engine comes from ``migrate.alembic_config``, never from an ini file.

One transaction per migration, begun by Alembic rather than around it: a migration may then
leave it for an ``autocommit_block()`` (PostgreSQL's ``CREATE INDEX CONCURRENTLY`` cannot
run inside one), and a run that fails keeps the migrations before the failing one.
"""

from alembic import context

from crm_journeys.storage.migrate import VERSION_TABLE, include_object
from crm_journeys.storage.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()

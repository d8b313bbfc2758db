"""Alembic environment: the engine comes from ``migrate.alembic_config``, never from an ini file."""

from alembic import context

from crm_journeys.storage.migrate import VERSION_TABLE, include_object
from crm_journeys.storage.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()

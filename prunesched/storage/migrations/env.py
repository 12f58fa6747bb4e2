"""Alembic environment: runs migrations on the engine that :func:`prunesched.storage.database.alembic_config` passes in."""

from alembic import context

from prunesched.storage.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()

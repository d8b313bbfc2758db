"""SQLAlchemy 2.0 models, sessions and migrations; every table is prefixed ``cj_``."""

"""The journey language: data classes, schema, semantic checks. Pure data in, data out; no I/O."""

"""The durable runtime: inbox, dispatch, wake-ups, outbox and the worker loop. No Flask."""

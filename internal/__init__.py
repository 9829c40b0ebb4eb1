"""mcsv's internals: one module per capability (rpc, queue, storage, mail, imaging,
observability, data) and one per service implementation."""

"""Events: the ZeroMQ bus, the snapshot service endpoint, and pipelines (adapters)."""

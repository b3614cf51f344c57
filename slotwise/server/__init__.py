"""The live service: one FastAPI application for the extender, the webhooks and the quota API."""

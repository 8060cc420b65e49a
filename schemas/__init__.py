"""Data contracts of asset-webhooks (pydantic v2): the event envelope, webhook subscriptions, and the
delivery task and dead letter that travel through the retry and dead-letter topics."""

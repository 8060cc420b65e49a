"""Everything that writes to Kafka: the event publisher for upstream systems and the asynchronous
producer the consumer groups use to hand deliveries to retry tiers and the dead-letter topic."""

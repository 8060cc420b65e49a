"""Everything that writes to Kafka: the event publisher for upstream systems, the alerts producer, and the
hand-off the consumer groups use to move deliveries to retry tiers and the dead-letter topic (all through
``assethooks.kafka.RecordProducer``)."""

"""asset-webhooks: turns asset events on Kafka into signed webhook deliveries.

This package holds what the processes share: settings, Kafka client set-up, the SQL store, HTTP delivery
and signing, and the ``assethooks`` CLI. The data contracts live in ``schemas``, the Kafka writers in
``producers`` and the consumer-group processes in ``consumers``.
"""

__version__ = "0.1.0"

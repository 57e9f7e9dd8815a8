"""Team mode: thin Bluetooth gateways → NATS JetStream → workers owning athletes in PostgreSQL.

``wire`` is what crosses NATS (subjects, partitions, message bodies and headers); the
gateway and the worker both speak it and nothing else of each other. ``stream`` creates
the stream and the lease bucket. The gateway's side: ``gateway`` (drivers tapped for raw
bytes → ``outbox`` → JetStream), ``leases``, ``gateway_mqtt`` (availability, commands) and
``emulated`` (``--emulated`` athletes' sessions); it imports no processors.
"""

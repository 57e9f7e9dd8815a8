"""Team mode: thin Bluetooth gateways → NATS JetStream → workers owning athletes in PostgreSQL.

``wire`` is what crosses NATS (subjects, partitions, message bodies and headers); the
gateway and the worker both speak it and nothing else of each other.
"""

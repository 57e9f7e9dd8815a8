"""The asyncio side of redox-streamer: pipeline, sinks (MQTT, InfluxDB, local store), CLI."""

__version__ = "0.1.0"

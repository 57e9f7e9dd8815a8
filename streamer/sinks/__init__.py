"""Where results go: MQTT (with Home Assistant discovery), InfluxDB, and each sink's outbox."""

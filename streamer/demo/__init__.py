"""What only the zero-set-up demo needs: synthetic history and an embedded MQTT broker."""

"""Alerts on MQTT turned into notifications: the notifier and its channels."""

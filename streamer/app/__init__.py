"""The application: its assembly from a config, the pipeline, what long-running commands share."""

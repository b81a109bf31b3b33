"""bcctrack: the service (SMTP intake, pipeline, store, poller, notifier, CLI)."""

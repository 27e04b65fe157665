"""notifier: the only service that talks SMTP (mail commands, member notices, expiry reminders)."""

"""The operator console's services: who may sign in, sessions, the audit log, page data."""

"""Tier-specific outreach: campaigns planned, sent exactly once, measured against a holdout."""

"""Tier-specific outreach: campaigns, their audience, sending, results and uplift."""

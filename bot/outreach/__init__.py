"""Tier-specific outreach: campaigns, their runs and tasks, results, alerts and uplift."""

"""Tier-specific outreach: campaigns, their audiences, deliveries, results and uplift."""

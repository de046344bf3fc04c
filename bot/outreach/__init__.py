"""Outreach: campaigns per tier, their runs, deliveries, results and measured uplift."""

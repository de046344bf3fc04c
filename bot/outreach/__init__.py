"""Tier-specific outreach: campaigns checked against the tiers, planned audiences with a
holdout, caps and cooldown, then sent (群发, staff follow-up, webhook) and measured."""

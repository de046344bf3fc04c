"""wecom-tagbot."""

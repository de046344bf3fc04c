"""Customer groups (客户群): memberships from callbacks and the daily sync (docs/wecom-groups.md)."""

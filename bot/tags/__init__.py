"""Corp tags: the catalogue of (group, name) ↔ WeCom ids, the outbox pushing changes, tag events."""

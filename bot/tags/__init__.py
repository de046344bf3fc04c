"""Corp tags: the catalogue of (group, name) ↔ WeCom ids, and the outbox that pushes tag changes."""

"""Tiering: metrics per customer, the tier rule language, evaluation, and the tag diff."""

"""Read-side services behind the operator console: typed results, definitions beside them."""

"""Stored WeCom callbacks: the inbox (store, claim, hand-off) and the dispatch to reactions."""

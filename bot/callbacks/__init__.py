"""Stored WeCom callbacks: the inbox, one handler per event kind, the welcome and its fast lane."""

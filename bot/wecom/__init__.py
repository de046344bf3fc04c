"""The WeCom adapter: the only package that imports wechatpy.

Import its modules directly (`bot.wecom.client`, `bot.wecom.budget`, ...): this file loads
nothing. WeCom's limits are in `bot/wecom_limits.py`, importable from below `bot.config`.
"""

"""The WeCom adapter: the only package that imports wechatpy.

Import its modules directly (`bot.wecom.client`, `bot.wecom.limits`, ...): this file loads
nothing, so `bot.wecom.limits` stays importable from below `bot.config`.
"""

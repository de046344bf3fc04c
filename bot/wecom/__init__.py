"""The WeCom adapter: the only package that imports wechatpy."""

from bot.wecom.budget import bulk, interactive
from bot.wecom.client import WeComClient
from bot.wecom.crypto import CallbackCrypto
from bot.wecom.events import CallbackEvent, parse_event

__all__ = [
    "CallbackCrypto",
    "CallbackEvent",
    "WeComClient",
    "bulk",
    "interactive",
    "parse_event",
]

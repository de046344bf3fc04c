"""Who is this code: a WeCom sign-in code exchanged for a member, for the sidebar and the console.

Both sign-ins end with a code WeCom hands to our redirect: the sidebar's OAuth2 inside the
client (wecom-api.md section 7.3) and the console's 扫码登录 (section 7.4). `auth/getuserinfo`
names its owner once, within 5 minutes. One step does it for both, under the shared failure
throttle (handlers.throttle, counted in the database for every process): a client whose
codes failed too often lately gets 429 before WeCom is asked, since WeCom spares only calls
with a valid code from the app's frequency limits. Each entry point
words the outcome its own way and counts in its own scope.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from bot.errors import WeComError
from bot.wecom.budget import interactive
from handlers import throttle
from handlers.context import runtime

log = logging.getLogger(__name__)

INVALID_CODE = 40029  # reused, expired, or another app's code
CODE_MAX = 512  # bytes, as WeCom documents it
REDIRECT_NOT_TRUSTED = 50001  # the redirect's domain is not the app's 可信域名


class Verdict(enum.Enum):
    """What a code turned out to be."""

    MEMBER = "member"
    INVALID = "invalid"  # no code, or one WeCom answers 40029 for: counted as a failure
    OUTSIDER = "outsider"  # a valid code of someone outside the corp (an openid, no userid)
    UNAVAILABLE = "unavailable"  # WeCom refused otherwise (50001: 可信域名) or was unreachable


@dataclass(frozen=True)
class CodeOwner:
    """The verdict on a code, with the member's userid or WeCom's errcode."""

    verdict: Verdict
    userid: str = ""
    errcode: int = 0


def who_is(code: str, *, scope: str) -> CodeOwner:
    """Ask WeCom whose sign-in `code` this is; count an invalid one against this client.

    Raise werkzeug's TooManyRequests (429 with Retry-After) when this client has failed
    too often in `scope` lately; the blueprints' error handlers render it.
    """
    throttle.refuse_if_throttled(scope)
    if not code or len(code.encode()) > CODE_MAX:
        throttle.record_failure(scope)
        return CodeOwner(Verdict.INVALID, errcode=INVALID_CODE)
    try:
        with interactive():  # a person waits for it
            who = runtime().wecom.get_user_info(code)
    except WeComError as exc:
        if exc.errcode == INVALID_CODE:
            throttle.record_failure(scope)
            return CodeOwner(Verdict.INVALID, errcode=INVALID_CODE)
        log.warning("%s sign-in: %s", scope, exc)
        return CodeOwner(Verdict.UNAVAILABLE, errcode=exc.errcode)
    if not who.userid:
        return CodeOwner(Verdict.OUTSIDER)
    return CodeOwner(Verdict.MEMBER, userid=who.userid)


def unavailable_message(errcode: int) -> str:
    """Say in Chinese what to do when WeCom named nobody for a reason other than the code."""
    if errcode == REDIRECT_NOT_TRUSTED:
        return (
            f"企业微信拒绝了登录的回调地址（{errcode}）。"
            "请管理员检查应用的可信域名是否与 [server] public_url 的域名一致。"
        )
    return f"请稍后重试。（{errcode}）"

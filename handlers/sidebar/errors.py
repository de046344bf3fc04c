"""The sidebar's errors: a friendly card, never a traceback or the API's JSON."""

from __future__ import annotations

import logging

from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from handlers.sidebar import signin
from handlers.sidebar.blueprint import bp

log = logging.getLogger(__name__)

TITLES = {
    400: "请求有误",
    403: "没有权限",
    404: "页面不存在",
    405: "不支持的请求方法",
    429: "尝试次数过多",
}


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    key = "throttled" if status == 429 else "error"
    page = signin.card(status, key, TITLES.get(status, exc.name), exc.description or "")
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            page.headers[name] = value  # Retry-After stays
    return page


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> ResponseReturnValue:
    log.exception("sidebar error")
    return signin.card(500, "error", "出错了", "服务器内部错误，请稍后重新打开侧边栏。")

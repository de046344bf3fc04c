"""wechatpy's enterprise client with our base URL, timeout and database-shared token."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from requests.utils import default_user_agent
from wechatpy.enterprise import WeChatClient

from bot.errors import WeComError
from bot.wecom import metrics
from bot.wecom.lean_http import LeanHTTP

POOL_SIZE = 64  # pooled connections to WeCom per process (threads beyond it reconnect)


def _tune_session(session: requests.Session, api_base: str) -> None:
    """Read the environment once, and pool enough connections for every worker thread.

    With `trust_env` on, requests scans every environment variable twice per call for
    proxy settings: a fifth of a callback's CPU under load. The proxy (HTTPS_PROXY,
    NO_PROXY) and CA bundle settings are resolved once here instead, so they still apply.
    The default pool keeps 10 connections; more threads than that reconnect each time.
    """
    session.proxies.update(requests.utils.get_environ_proxies(api_base))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)


class LeanSession:
    """Send WeCom's API calls through a lean keep-alive pool (bot.wecom.lean_http).

    requests spends about as much CPU preparing a call and wrapping its answer (header
    dicts, hooks, cookie jars) as urllib3 spends making it, and urllib3 as much again
    over what a JSON call to one host needs, on each of a scan's three calls. Calls of
    the shape wechatpy makes (GET or POST of a JSON body, token in the query, no proxy)
    go through the lean pool here; anything else, and gettoken, through the tuned
    requests session, whose settings (proxy, CA bundle) decide which way: with a proxy
    configured for the API's host every call takes the requests path. Failures are
    raised as the same requests exceptions, so the adapter's policy sees no difference.
    """

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        verify = session.verify
        self._http = LeanHTTP(
            verify=verify if isinstance(verify, str) else verify is not False,
            user_agent=default_user_agent(),
            pool_size=POOL_SIZE,
        )

    def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Make one call; return a response with requests.Response's names."""
        if kwargs or self.session.proxies or not isinstance(data, bytes | None):
            return self.session.request(
                method, url, params=params, data=data, timeout=timeout, **kwargs
            )
        if params:
            query = urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
            url = f"{url}{'&' if '?' in url else '?'}{query}" if query else url
        return self._http.request(method, url, data, timeout)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.session.get(url, **kwargs)

    def close(self) -> None:
        self._http.close()
        self.session.close()


class WeChatTransport(WeChatClient):  # type: ignore[misc]
    """A WeChatClient that never retries by itself and takes its token from a callback.

    wechatpy keeps tokens per object and hard-codes the gettoken host; both are replaced so
    `api_base` is honoured everywhere and every process shares one token.
    """

    _http: Any  # wechatpy's requests.Session, then the LeanSession in front of it

    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        api_base: str,
        timeout: float,
        token_source: Callable[[], str],
        before_call: Callable[[str], None],
    ) -> None:
        # auto_retry=False: retries and token refetches are the adapter's decision.
        super().__init__(corp_id, secret, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = api_base
        self._token_source = token_source
        self._before_call = before_call
        self._local = threading.local()
        session: requests.Session = self._http
        _tune_session(session, api_base)
        self._http = LeanSession(session)

    @property
    def access_token(self) -> str:
        """Return the shared token, remembering it per thread to invalidate it precisely."""
        token = self._token_source()
        self._local.token = token
        return token

    @property
    def last_token(self) -> str:
        """Return the token this thread sent last."""
        return str(getattr(self._local, "token", ""))

    def fetch_access_token(self) -> dict[str, Any]:
        """Call gettoken under `api_base` with a timeout (doc 91039); raise WeComError."""
        api = "gettoken"
        self._before_call(api)
        started = time.monotonic()
        try:
            res = self._http.get(
                self.API_BASE_URL + api,
                params={"corpid": self.corp_id, "corpsecret": self.secret},
                timeout=self.timeout,
            )
            res.raise_for_status()
            result: dict[str, Any] = res.json()
        except requests.RequestException as exc:
            metrics.record(api, -2, time.monotonic() - started)
            raise WeComError(-2, f"{type(exc).__name__}", api=api, retryable=True) from None
        except ValueError:
            metrics.record(api, -2, time.monotonic() - started)
            raise WeComError(-2, "response is not JSON", api=api, retryable=True) from None
        errcode = int(result.get("errcode") or 0)
        metrics.record(api, errcode, time.monotonic() - started)
        if errcode or not result.get("access_token"):
            # 40001 (bad secret) must never be retried: repeated failures ban the IP.
            retryable = errcode in (-1, 45009, 45033)
            raise WeComError(errcode, str(result.get("errmsg", "")), api=api, retryable=retryable)
        return result

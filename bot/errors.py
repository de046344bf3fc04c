"""One exception hierarchy for the whole bot; translated once at each edge."""

from __future__ import annotations


class TagbotError(Exception):
    """Base of every error the bot raises on purpose; its message is shown to the operator."""


class ConfigError(TagbotError):
    """The configuration is unusable; `problems` lists each one as `key: reason`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class StoppedError(TagbotError):
    """The process is stopping: the work was given up at a safe point, nothing half-written."""


class NotFoundError(TagbotError):
    """A named thing (channel, customer, campaign) does not exist."""


class ValidationError(TagbotError):
    """Input from an operator or a client is malformed."""


class WeComError(TagbotError):
    """WeCom answered with a non-zero errcode, or could not be reached.

    `errcode` is WeCom's code (-1 for "system busy"; we use -2 for network failures and
    timeouts); `retryable` says whether the same call may succeed later unchanged.
    """

    def __init__(
        self, errcode: int, errmsg: str, *, api: str = "", retryable: bool = False
    ) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api
        self.retryable = retryable
        where = f"{api}: " if api else ""
        super().__init__(f"{where}WeCom error {errcode}: {errmsg}")


class CallbackError(TagbotError):
    """A callback request failed verification or parsing; answer 4xx and store nothing."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        self.reason = reason
        self.status = status
        super().__init__(reason)

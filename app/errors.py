"""One root error type; every error that reaches an operator says what to do."""


class AlertHistoryError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(AlertHistoryError):
    """A setting is invalid; the message names the variable."""


class InvalidAlert(AlertHistoryError):
    """An incoming alert (topic message or HTTP body) does not follow the contract.

    `field` is the dotted path of the offending field, so callers can name it.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BrokerUnavailable(AlertHistoryError):
    """Kafka did not acknowledge a produce in time, or too many requests already wait on it.

    `retry_after_s`: when a sender may try again (the HTTP Retry-After header).
    """

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

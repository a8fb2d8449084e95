"""Exception hierarchy.

FediError
 ├── ConfigError        bad configuration; start-up stops with the message
 ├── SignatureError     an HTTP signature or digest could not be verified (reason says why)
 ├── FetchError         an outbound fetch was refused or failed (reason says why)
 └── ValidationError    untrusted input is malformed (reason says why)
"""


class FediError(Exception):
    """Base of all fedi errors; `reason` is a sentence a person can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(FediError):
    pass


class SignatureError(FediError):
    pass


class FetchError(FediError):
    """`status` is the remote's HTTP status when it answered with an error, else None."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status

    @property
    def gone(self) -> bool:
        return self.status in (404, 410)


class ValidationError(FediError):
    pass

"""The service's exceptions, in one leaf module that every layer may import."""

from __future__ import annotations


class BackendError(Exception):
    """A backend could not be reached or refused a request for reasons other than input."""


class AlreadyExists(Exception):
    """A create found a record with the same id."""


class BlobNotFound(KeyError):
    """No blob is stored under the key."""


class JobError(Exception):
    """A job's work failed with a stable ``code``.

    The one failure type every job handler raises, analyzers included. ``transient``
    failures are retried with backoff until the delivery limit, then dead-lettered; the
    others end the job ``failed`` at once. A handler that knows better than the backoff when
    to try again (a server's ``Retry-After``) names the wait in ``retry_after_s``.
    """

    def __init__(
        self, code: str, message: str, *, transient: bool, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient
        self.retry_after_s = retry_after_s


class CliError(Exception):
    """A failure to report as one line on stderr with a non-zero exit."""

"""The client's exceptions: every one is a `ClientError`; `result` raises the built-in `TimeoutError`."""


class ClientError(Exception):
    """An error of the task manager or of the client's settings, with the task manager's reason."""


class NotSupported(ClientError):
    """What this task manager cannot do (the message says why)."""


class DuplicateId(ClientError):
    """A task with this id is already scheduled, queued, running or has a result."""


class UnknownTask(ClientError):
    """No task with this id is known to the task manager."""


class Unreachable(ClientError):
    """The task manager could not be reached."""


class InvalidTask(ClientError):
    """The task manager (or the client, before sending) refused the task itself."""

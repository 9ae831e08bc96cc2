"""workerhost_sdk: write a workerhost worker as one Python function.

    from workerhost_sdk import worker, RetriableError, FatalError

    @worker
    def handle(params, task):
        if "video_id" not in params:
            raise FatalError("params.video_id is required")      # exit 2, never retried
        task.progress(50, "downloading")                         # a progress line on stderr
        print("debug output")                                    # goes to stderr, never stdout
        return {"video_id": params["video_id"]}

    if __name__ == "__main__":
        handle()          # `python -m module`; the host's `function: handle` calls handle() too

Calling the decorated object with no arguments runs the worker: spawn mode (one task document on stdin,
one result document on stdout, the protocol's exit code) or pool mode (one task per line, one result per
line, until stdin ends), chosen by the ``WORKERHOST_MODE`` environment variable the host sets. Calling it
with arguments calls the plain function, so handlers stay unit-testable:
``handle({"video_id": "x"}, Task(params={"video_id": "x"}))``.

No runtime dependencies; Python 3.9+.
"""

from ._runner import (
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_RETRIABLE,
    EXIT_SUCCESS,
    EXIT_TIMEOUT,
    FatalError,
    InvalidTask,
    RetriableError,
    Task,
    Worker,
    WorkerError,
    run,
    worker,
)

__version__ = "0.1.0"

__all__ = [
    "worker",
    "run",
    "Worker",
    "Task",
    "WorkerError",
    "RetriableError",
    "FatalError",
    "InvalidTask",
    "EXIT_SUCCESS",
    "EXIT_RETRIABLE",
    "EXIT_FATAL",
    "EXIT_TIMEOUT",
    "EXIT_INTERRUPTED",
    "__version__",
]

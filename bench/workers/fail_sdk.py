"""A worker on the Python SDK that fails every task with a retriable error (the time section's failing
stream)."""
from workerhost_sdk import worker


@worker
def handle(params, task):
    raise RuntimeError("upstream said no")

"""A no-op worker on the Python SDK (spawn and pool mode): returns an empty result."""
from workerhost_sdk import worker


@worker
def handle(params, task):
    return {}

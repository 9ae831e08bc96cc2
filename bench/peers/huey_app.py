"""The Huey peer: a no-op task whose (non-None) result is stored, on the benchmark's Redis."""
import os

from huey import RedisHuey

huey = RedisHuey(os.environ["BENCH_HUEY_NAME"], url=os.environ["BENCH_REDIS_URL"])


@huey.task()
def noop():
    return True

"""The Celery peer: a no-op task, results stored in the benchmark's Redis under a unique key prefix, on
the broker named by BENCH_BROKER (Redis or RabbitMQ) and a unique queue."""
import os

from celery import Celery

prefix = os.environ["BENCH_PREFIX"]
queue = os.environ["BENCH_QUEUE"]
app = Celery("bench", broker=os.environ["BENCH_BROKER"], backend=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_default_queue=queue,
    task_default_exchange=queue,
    task_default_routing_key=queue,
    result_backend_transport_options={"global_keyprefix": prefix},
    broker_transport_options={"global_keyprefix": prefix} if os.environ["BENCH_BROKER"].startswith("redis") else {},
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
    broker_connection_retry_on_startup=True,
)


@app.task
def noop():
    return True

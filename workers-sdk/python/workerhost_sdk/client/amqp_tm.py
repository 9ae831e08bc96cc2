"""The `amqp` task manager: a persistent publish (delivery mode 2, `application/json`, `message_id` = task
id) to the default exchange with publisher confirms and `mandatory`, as the AMQP adapter's `submit`. Results
come back through a `reply_to` queue of this client's own (exclusive, server-named) and are matched by the
result document's `id`. Needs the `[amqp]` extra (pika). The broker keeps no task status or cancel."""

import json
import time

from .errors import ClientError, InvalidTask, NotSupported, Unreachable


class AmqpTM:
    kind = "amqp"

    def __init__(self, settings, base):
        try:
            import pika
        except ImportError:
            raise NotSupported("the amqp task manager needs pika: pip install 'workerhost-sdk[amqp]'") from None
        self._pika = pika
        self.url = settings.get("url") or "amqp://guest:guest@127.0.0.1:5672/%2f"
        self.queue = settings.get("queue") or "workerhost.tasks"
        self._conn = None
        self._ch = None
        self._reply = None
        self._results = {}

    def _channel(self):
        if self._ch is not None and self._ch.is_open:
            return self._ch
        p = self._pika
        try:
            self._conn = p.BlockingConnection(p.URLParameters(self.url))
            ch = self._conn.channel()
            ch.confirm_delivery()
            self._reply = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
            ch.basic_consume(self._reply, self._on_result, auto_ack=True)
        except p.exceptions.AMQPConnectionError as e:
            raise Unreachable(f"amqp task manager: {e!r}") from None
        except p.exceptions.AMQPError as e:
            raise ClientError(f"amqp task manager: {e!r}") from None
        self._ch = ch
        return ch

    def _on_result(self, ch, method, props, body):
        try:
            doc = json.loads(body)
        except ValueError:
            return
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            self._results[doc["id"]] = doc

    def submit(self, task, connection=None):
        if task.timed:
            raise NotSupported("the amqp task manager cannot hold a task until a due time (RabbitMQ 3.10 needs "
                               "a plugin for that); retries wait in the host there")
        if task.priority:
            raise NotSupported("the amqp task manager delivers in queue order and keeps no priority")
        ch = self._channel()
        p = self._pika
        props = p.BasicProperties(content_type="application/json", delivery_mode=2, reply_to=self._reply,
                                  message_id=task.id if len(task.id.encode()) < 256 else None,
                                  correlation_id=task.correlation_id)
        try:
            ch.basic_publish("", self.queue, task.envelope_json().encode(), props, mandatory=True)
        except p.exceptions.UnroutableError:
            raise ClientError(f"amqp task manager: queue {self.queue} does not exist") from None
        except p.exceptions.NackError:
            raise ClientError(f"amqp task manager: the broker refused task {task.id} (nack)") from None
        except p.exceptions.AMQPError as e:
            raise Unreachable(f"amqp task manager: task {task.id}: {e!r}") from None
        return task.id

    def status(self, id):
        raise NotSupported("the amqp task manager keeps no task status: a message leaves the queue when it is "
                           "acknowledged; use result(id) for tasks this client submitted")

    def result(self, id):
        if id in self._results:
            return self._results.pop(id)
        if self._conn is None:
            raise ClientError(f"task {id}: results come through this client's reply queue; submit it with "
                              "this client")
        try:
            self._conn.process_data_events(time_limit=0.2)
        except self._pika.exceptions.AMQPError as e:
            raise Unreachable(f"amqp task manager: {e!r}") from None
        return self._results.pop(id, None)

    def close(self):
        if self._conn is not None and self._conn.is_open:
            self._conn.close()
        self._conn = self._ch = None

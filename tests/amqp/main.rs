//! Integration tests of the `amqp` task manager: the built `workerhost` binary against the machine's
//! RabbitMQ (127.0.0.1:5672, guest/guest; see ../shared/SERVICES.md). A broker that cannot be reached
//! fails these tests (under CI=true and everywhere else); they never skip. Each test uses its own queues
//! (or its own vhost, where it closes connections) and deletes them.

mod faults;
mod flow;
mod ops;
mod rabbit;
#[path = "../support/mod.rs"]
mod support;

//! One connection "generation": the connection, a channel that consumes and acks, a channel in
//! confirm mode that publishes. Any failure of either breaks the whole link; the adapter opens a new one
//! with the next generation number, so delivery tags of a dead channel are never acked on a new one.

use super::settings::{QueueType, Settings};
use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind,
};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub struct Link {
    pub generation: u64,
    conn: Connection,
    /// Consumes and acks.
    pub ch: Channel,
    /// Publishes with confirms (results, dead letters, submitted tasks).
    pub publisher: Channel,
    /// Kept alive: dropping a consumer cancels it.
    pub consumer: Mutex<Option<Consumer>>,
    broken: AtomicBool,
    pub opened: Instant,
}

/// The arguments the task queue is declared with.
pub fn queue_args(s: &Settings) -> FieldTable {
    let mut args = FieldTable::default();
    match s.queue_type {
        Some(QueueType::Quorum) => {
            args.insert("x-queue-type".into(), LongString::from("quorum").into());
        }
        Some(QueueType::Classic) => {
            args.insert("x-queue-type".into(), LongString::from("classic").into());
        }
        None => {}
    }
    if let Some(dlx) = &s.dead_letter_exchange {
        args.insert(
            "x-dead-letter-exchange".into(),
            LongString::from(dlx.as_str()).into(),
        );
        if dlx.is_empty() {
            // The default exchange routes by queue name: send dead letters to the dead-letter queue.
            args.insert(
                "x-dead-letter-routing-key".into(),
                LongString::from(s.dead_letter_queue().as_str()).into(),
            );
        }
    }
    args
}

impl Link {
    /// Connects, opens both channels and declares (or checks) the queues.
    pub async fn open(
        url: &str,
        s: &Settings,
        host_id: &str,
        generation: u64,
    ) -> lapin::Result<Link> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("workerhost {host_id}").into());
        let conn = Connection::connect(url, props).await?;
        let ch = conn.create_channel().await?;
        let publisher = conn.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let link = Link {
            generation,
            conn,
            ch,
            publisher,
            consumer: Mutex::new(None),
            broken: AtomicBool::new(false),
            opened: Instant::now(),
        };
        link.declare(s).await?;
        Ok(link)
    }

    async fn declare(&self, s: &Settings) -> lapin::Result<()> {
        let durable = QueueDeclareOptions::durable();
        if s.declare {
            self.publisher
                .queue_declare(s.queue.as_str().into(), durable, queue_args(s))
                .await?;
        } else {
            self.publisher
                .queue_declare(
                    s.queue.as_str().into(),
                    durable.passive(),
                    FieldTable::default(),
                )
                .await?;
        }
        if let Some(x) = s.result_exchange.as_deref().filter(|x| !x.is_empty()) {
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            };
            self.publisher
                .exchange_declare(
                    x.into(),
                    ExchangeKind::Direct,
                    passive,
                    FieldTable::default(),
                )
                .await?;
        }
        let own_dead_queue = s.dead_letter_exchange.is_none()
            || (s.dead_letter_exchange.as_deref() == Some("") && s.declare);
        if own_dead_queue {
            self.publisher
                .queue_declare(
                    s.dead_letter_queue().as_str().into(),
                    durable,
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// basic.qos + basic.consume with manual acks.
    pub async fn consume(
        &self,
        s: &Settings,
        prefetch: u16,
        tag: &str,
        consumer_timeout_ms: Option<u64>,
    ) -> lapin::Result<Consumer> {
        self.ch
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let mut args = FieldTable::default();
        if let Some(ms) = consumer_timeout_ms {
            let ms = i64::try_from(ms).unwrap_or(i64::MAX);
            args.insert("x-consumer-timeout".into(), AMQPValue::LongLongInt(ms));
        }
        let tag = ShortString::try_new(tag)
            .unwrap_or_else(|_| ShortString::from(format!("workerhost-{}", self.generation)));
        self.ch
            .basic_consume(s.queue.as_str().into(), tag, Default::default(), args)
            .await
    }

    /// Publishes with a publisher confirm. `Ok(false)`: the broker returned the message as unroutable
    /// (only asked for with `mandatory`).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<bool, String> {
        let exchange = ShortString::try_new(exchange).map_err(|e| e.to_string())?;
        let key = ShortString::try_new(routing_key).map_err(|e| e.to_string())?;
        let opts = BasicPublishOptions {
            mandatory,
            ..Default::default()
        };
        let confirm = self
            .publisher
            .basic_publish(exchange, key, opts, body, props)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(true),
            Confirmation::Ack(Some(_)) => Ok(false),
            Confirmation::Nack(_) => Err("the broker refused the message (publisher nack)".into()),
        }
    }

    /// A channel of its own in confirm mode, for the dead-letter operations: closing it (or the host
    /// dying) requeues whatever it took and did not ack.
    pub async fn op_channel(&self) -> lapin::Result<Channel> {
        let ch = self.conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(ch)
    }

    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::SeqCst);
    }

    pub fn healthy(&self) -> bool {
        !self.broken.load(Ordering::SeqCst)
            && self.conn.status().connected()
            && self.ch.status().connected()
            && self.publisher.status().connected()
    }

    /// Closes the connection (the broker requeues whatever it still has unacked).
    pub async fn close(&self) {
        self.mark_broken();
        if let Ok(mut c) = self.consumer.lock() {
            c.take();
        }
        if self.conn.status().connected() {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                self.conn.close(200, "workerhost closing".into()),
            )
            .await;
        }
    }
}

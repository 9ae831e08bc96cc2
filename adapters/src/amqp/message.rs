//! Messages from the broker: what the adapter keeps of each, the claim buffer and the held deliveries.

use crate::{ClaimRequest, Delivery, Envelope, Lease, Malformed, ResultDocument};
use lapin::types::{AMQPValue, ShortString};
use lapin::{Acker, BasicProperties};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// lapin hands each delivery to its own task, so they may reach the buffer out of order; a claim waits
/// this long for a missing delivery tag before it hands out the later ones.
const GAP_WAIT: Duration = Duration::from_millis(20);

/// A message from the broker, buffered or handed out.
pub struct Msg {
    pub generation: u64,
    pub tag: u64,
    pub acker: Acker,
    pub props: BasicProperties,
    pub body: Vec<u8>,
    pub envelope: Result<Envelope, Malformed>,
    pub task_id: String,
    pub deliveries: u32,
    pub received: Instant,
}

#[derive(Default)]
pub struct Queues {
    /// Received, not handed out.
    pub buffer: VecDeque<Msg>,
    /// Handed out, by lease receipt.
    pub held: HashMap<String, Msg>,
    /// Redeliveries of tasks this host still runs from a dead channel: settled with that task's outcome.
    pub parked: Vec<Msg>,
    /// Every delivery tag up to this one (of this generation) has reached the buffer.
    pub seen: (u64, u64),
}

impl Queues {
    /// Takes what fits `req` from the buffer, oldest first; parks redeliveries of tasks still held. The
    /// flag says whether messages are waiting that did not fit (the claim then answers at once).
    pub fn take(&mut self, req: &ClaimRequest, generation: u64) -> (Vec<Delivery>, bool) {
        self.buffer.retain(|m| m.generation == generation);
        self.parked.retain(|m| m.generation == generation);
        if self.seen.0 != generation {
            self.seen = (generation, 0);
        }
        // The part of the buffer in the broker's order is eligible.
        let (mut eligible, mut rest) = (Vec::new(), VecDeque::new());
        let mut in_order = true;
        while let Some(m) = self.buffer.pop_front() {
            in_order = in_order && (m.tag <= self.seen.1 + 1 || m.received.elapsed() >= GAP_WAIT);
            if !in_order {
                rest.push_back(m);
                continue;
            }
            self.seen.1 = self.seen.1.max(m.tag);
            let still_held = self
                .held
                .values()
                .any(|h| h.generation < generation && h.task_id == m.task_id);
            if m.envelope.is_ok() && still_held {
                tracing::info!(task_id = %m.task_id, "redelivered after a reconnect while it still runs here; its outcome will settle it");
                self.parked.push(m);
            } else {
                eligible.push(m);
            }
        }
        let slot_of = |t: &str| {
            req.slots
                .iter()
                .position(|s| s.types.iter().any(|x| x == t))
        };
        let mut room: Vec<usize> = req.slots.iter().map(|s| s.max).collect();
        let mut left = req.total();
        let mut chosen = vec![false; eligible.len()];
        // What a slot has room for; malformed messages and unknown types (the host dead-letters them).
        for (i, m) in eligible.iter().enumerate() {
            if left == 0 {
                break;
            }
            chosen[i] = match &m.envelope {
                Err(_) => true,
                Ok(e) => match slot_of(&e.task_type) {
                    Some(s) if room[s] > 0 => {
                        room[s] -= 1;
                        true
                    }
                    // Its worker is busy (at its cap): the message waits here.
                    Some(_) => false,
                    // A known type without a slot: its worker has no room either.
                    None => !req.known_types.contains(&e.task_type),
                },
            };
            left -= usize::from(chosen[i]);
        }
        let mut keep = VecDeque::new();
        let mut out = Vec::new();
        for (m, take) in eligible.into_iter().zip(chosen) {
            if !take {
                keep.push_back(m);
                continue;
            }
            let lease = Lease {
                task_id: m.task_id.clone(),
                receipt: receipt(m.generation, m.tag),
            };
            out.push(Delivery {
                lease: lease.clone(),
                envelope: m.envelope.clone(),
                deliveries: m.deliveries,
            });
            self.held.insert(lease.receipt, m);
        }
        let unfit = !keep.is_empty();
        keep.extend(rest);
        self.buffer = keep;
        (out, unfit)
    }

    /// A redelivery of `task_id` received on `generation`, parked or still buffered.
    pub fn take_redelivery(&mut self, task_id: &str, generation: u64) -> Option<Msg> {
        let q = self;
        let hit = |m: &Msg| m.generation == generation && m.task_id == task_id;
        if let Some(i) = q.parked.iter().position(hit) {
            return Some(q.parked.swap_remove(i));
        }
        let i = q.buffer.iter().position(|m| hit(m) && m.envelope.is_ok())?;
        q.buffer.remove(i)
    }
}

pub fn receipt(generation: u64, tag: u64) -> String {
    format!("{generation}:{tag}")
}

/// Deliveries so far, this one included: `x-delivery-count` (quorum queues) + 1, otherwise 2 for a
/// redelivered message (classic queues only say "delivered before") and 1 for a fresh one.
/// The message's `traceparent` header (W3C trace context over AMQP), when it has one.
pub fn traceparent_header(props: &BasicProperties) -> Option<String> {
    let v = props.headers().as_ref()?.inner().get("traceparent")?;
    let s = match v {
        AMQPValue::LongString(s) => s.to_string(),
        AMQPValue::ShortString(s) => s.to_string(),
        _ => return None,
    };
    (!s.trim().is_empty()).then_some(s)
}

pub fn delivery_count(props: &BasicProperties, redelivered: bool) -> u32 {
    let header = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count"))
        .and_then(|v| match v {
            AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
            AMQPValue::LongInt(n) => Some(i64::from(*n)),
            AMQPValue::LongUInt(n) => Some(i64::from(*n)),
            AMQPValue::LongLongInt(n) => Some(*n),
            _ => None,
        });
    match header {
        Some(n) => u32::try_from(n.max(0)).unwrap_or(u32::MAX - 1) + 1,
        None if redelivered => 2,
        None => 1,
    }
}

pub fn short(s: &str) -> Option<ShortString> {
    ShortString::try_new(s).ok()
}

impl Msg {
    pub fn new(generation: u64, d: lapin::message::Delivery) -> Msg {
        let deliveries = delivery_count(&d.properties, d.redelivered);
        let mut envelope =
            Envelope::parse(&d.data).map_err(|reason| Malformed::new(&d.data, reason.to_string()));
        // A producer that traces may put its context in the standard header rather than the body.
        if let Ok(e) = &mut envelope
            && e.traceparent.is_none()
        {
            e.traceparent = traceparent_header(&d.properties);
        }
        if let Ok(e) = &mut envelope
            && e.correlation_id.is_none()
        {
            e.correlation_id = d
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.to_string());
        }
        let task_id = match (&envelope, d.properties.message_id()) {
            (Ok(e), _) => e.id.clone(),
            (Err(_), m) => crate::envelope::salvage(&d.data)
                .0
                .or_else(|| m.as_ref().map(|m| m.to_string()))
                .filter(|id| crate::envelope::name_problem(id).is_none())
                .unwrap_or_else(|| format!("amqp-{generation}-{}", d.delivery_tag)),
        };
        Msg {
            generation,
            tag: d.delivery_tag,
            acker: d.acker,
            props: d.properties,
            body: d.data,
            envelope,
            task_id,
            deliveries,
            received: Instant::now(),
        }
    }
}

/// The short error message of a result document.
pub fn error_message(doc: &ResultDocument) -> String {
    doc.error_message().unwrap_or_else(|| "dead".into())
}

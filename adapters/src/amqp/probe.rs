//! The broker's version, read from its `connection.start` (lapin keeps the server properties to itself):
//! one extra short connection that sends the protocol header, reads the first frame and hangs up.

use lapin::protocol::{AMQPClass, connection::AMQPMethod};
use lapin::tcp::AMQPUriTcpExt;
use lapin::types::AMQPValue;
use lapin::uri::AMQPUri;
use std::io::{Read, Write};
use std::time::Duration;

/// The first RabbitMQ release that honours the consumer argument `x-consumer-timeout`.
pub const CONSUMER_TIMEOUT_SINCE: (u32, u32, u32) = (3, 11, 15);
/// RabbitMQ's default `consumer_timeout` (30 min).
pub const DEFAULT_BROKER_TIMEOUT_MS: u64 = 30 * 60 * 1000;

/// The broker's `product` and `version` server properties.
pub async fn server_version(url: &str) -> Result<(String, String), String> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || blocking(&url))
        .await
        .map_err(|e| e.to_string())?
}

fn blocking(url: &str) -> Result<(String, String), String> {
    let mut uri: AMQPUri = url.parse()?;
    uri.query.connection_timeout = Some(5_000);
    let mut s = uri.connect().map_err(|e| e.to_string())?;
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"AMQP\x00\x00\x09\x01")
        .map_err(|e| e.to_string())?;
    let mut header = [0u8; 7];
    s.read_exact(&mut header).map_err(|e| e.to_string())?;
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    if header[0] != 1 || size > 1 << 20 {
        return Err("the broker did not answer with connection.start".into());
    }
    let mut payload = vec![0u8; size + 1];
    s.read_exact(&mut payload).map_err(|e| e.to_string())?;
    payload.truncate(size);
    let (_, class) = lapin::protocol::parse_class(&payload[..]).map_err(|e| e.to_string())?;
    let AMQPClass::Connection(AMQPMethod::Start(start)) = class else {
        return Err("the broker did not answer with connection.start".into());
    };
    let prop = |k: &str| match start.server_properties.inner().get(k) {
        Some(AMQPValue::LongString(v)) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(v)) => v.to_string(),
        _ => String::new(),
    };
    Ok((prop("product"), prop("version")))
}

/// `3.10.8` → (3, 10, 8); missing or odd parts count as 0.
pub fn parse_version(v: &str) -> (u32, u32, u32) {
    let mut parts = v
        .split(['.', '-', '+', ' '])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// Whether a broker of this product and version honours `x-consumer-timeout`.
pub fn supports_consumer_timeout(product: &str, version: &str) -> bool {
    product.eq_ignore_ascii_case("rabbitmq") && parse_version(version) >= CONSUMER_TIMEOUT_SINCE
}

//! TLS of the host's HTTP clients (remote workers, webhooks): reqwest on rustls with the ring provider,
//! the one lapin, redis and postgres use too (no aws-lc, no C toolchain for it). reqwest without a
//! provider of its own takes the process default, so it is installed before any client is built.
//! Server certificates are checked against the system's roots (rustls-platform-verifier).

/// Makes ring the process's rustls provider (a no-op when one is installed already).
pub fn install_ring() {
    // Err: a provider is installed already (ours, by an earlier call); either way one is in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client builder whose TLS works (see the module's docs).
pub fn client_builder() -> reqwest::ClientBuilder {
    install_ring();
    reqwest::Client::builder()
}

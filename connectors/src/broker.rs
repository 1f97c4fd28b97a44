//! The embedded MQTT broker (rumqttd) that `yujing demo` runs so that nothing outside the process
//! is needed. It listens on loopback; it cannot be stopped and does not report the port it bound,
//! so the caller picks a free port first ([`free_port`]).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("port {0} is taken")]
    PortTaken(u16),
    #[error("cannot find a free port: {0}")]
    NoPort(std::io::Error),
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, BrokerError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(BrokerError::NoPort)?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(BrokerError::NoPort)
}

/// Whether `port` can be bound on 127.0.0.1 now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Start the broker on 127.0.0.1:`port` (MQTT 3.1.1) in a thread of its own.
pub fn start(port: u16, max_payload: usize) -> Result<SocketAddr, BrokerError> {
    if !port_is_free(port) {
        return Err(BrokerError::PortTaken(port));
    }
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = rumqttd::ServerSettings {
        name: "yujing-embedded".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_payload,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 << 20,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::NoPort)?;
    Ok(listen)
}

//! The INFO document sent to clients, with nats-server's field names and order.

use serde::Serialize;

/// Server INFO, as sent on connect and on async updates.
#[derive(Clone, Debug, Serialize)]
pub struct Info {
    /// Server public nkey (`N...`).
    pub server_id: String,
    /// Configured name, else the id.
    pub server_name: String,
    /// nats-server protocol compatibility version.
    pub version: String,
    /// Protocol level, 1.
    pub proto: i32,
    /// Build commit.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub git_commit: String,
    /// Runtime string (nats-server puts the Go version here).
    pub go: String,
    /// Listen host.
    pub host: String,
    /// Listen port.
    pub port: u16,
    /// Headers supported.
    pub headers: bool,
    /// Auth is required.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    /// TLS is required.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    /// Client certificates are verified.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    /// TLS is offered but optional (`allow_non_tls`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_available: bool,
    /// Max payload for this client.
    pub max_payload: usize,
    /// Connection id.
    #[serde(skip_serializing_if = "is_zero")]
    pub client_id: u64,
    /// Client's IP.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_ip: String,
    /// Auth nonce.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nonce: String,
    /// Cluster name (when clustered).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// Client URLs of the cluster.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    /// Lame duck mode notice.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
    /// Set in the INFO that answers the first PING after CONNECT.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub connect_info: bool,
    /// Account the client is bound to (with connect_info).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_account: String,
    /// API level of the server's features (nats-server 2.15.1 sends 5); clients
    /// read it to decide what they may ask for.
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub api_lvl: i32,
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Info {
    /// `INFO <json> \r\n` (nats-server puts a space before the CRLF).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = b"INFO ".to_vec();
        serde_json::to_writer(&mut line, self).expect("INFO serialises");
        line.extend_from_slice(b" \r\n");
        line
    }
}

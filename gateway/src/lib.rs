//! AI Stack gateway: a reverse proxy on Pingora whose plugins are Proxy-Wasm
//! filters, plus the admin API and the process that also hosts the
//! collaboration backend.
//!
//! Where to start: [`server::run`] wires everything; [`proxy`] is the request
//! flow; [`config`] the YAML surface and validation; [`snapshot`] the
//! atomically swapped routing state; [`upstream`] balancing and target
//! health; [`wasm`] the Proxy-Wasm host; [`keys`] the consumers and API keys store;
//! [`cluster`] what nodes share through Redis; [`tls`] TLS termination on the listeners.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod keys;
pub mod observability;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod upstream;
pub mod wasm;

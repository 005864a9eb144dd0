//! `pingora-bare LISTEN UPSTREAM`: the smallest Pingora 0.9.1 reverse proxy, one thread,
//! every request to one upstream over Pingora's keep-alive pool. It is loadbench's
//! floor for AI Stack: what Pingora costs before the gateway adds routing, request ids,
//! metrics, timeouts and filters. Same `ServerConf` choices as the gateway
//! (one thread, no work stealing, short grace); no per-peer timeouts, so no timers.

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora::prelude::{HttpPeer, ProxyHttp, Result, Session};
use pingora::server::Server;
use pingora::server::configuration::ServerConf;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2).and_then(|a| a.parse().ok()))
    else {
        eprintln!(
            "usage: pingora-bare LISTEN_ADDR UPSTREAM_ADDR (e.g. 127.0.0.1:8080 127.0.0.1:9000)"
        );
        return ExitCode::FAILURE;
    };
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}

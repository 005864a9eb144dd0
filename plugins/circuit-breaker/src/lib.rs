//! `circuit-breaker`: a Proxy-Wasm HTTP filter that stops sending requests to a failing
//! upstream for a while, and answers a fallback instead.
//!
//! One circuit per route, in shared data (key `circuit:<route_name>`; with `scope:
//! upstream` one per upstream, `circuit:upstream:<cluster_name>`), read and written
//! with CAS so every worker thread sees the same one. `on_http_request_headers` decides:
//! closed passes, open answers the fallback (the upstream is not touched), half-open lets
//! exactly `half_open_probes` requests through and answers the fallback to the others.
//! The fallback is a static response, or a fallback upstream: the request then goes on,
//! sent there by setting the `aistack.upstream` property, and its outcome is not counted
//! (only the primary's outcomes move the circuit).
//! `on_log` records how an admitted request ended (`response.code`, and
//! `response.code_details` for the gateway's own connect/timeout errors). A probe that
//! succeeds closes the circuit; one that fails reopens it. The open → half-open move is
//! made by the first request after the cooldown. Each change is logged (info) and exported
//! as the gauge `circuit_state;route=<route>` (`aistack_plugin_circuit_state{plugin,route}`:
//! 0 closed, 1 open, 2 half-open).
//!
//! Start at [`CircuitRoot::on_configure`] (config: `config.rs`), then [`Breaker`]; the
//! state machine itself is `circuit.rs`.

mod circuit;
mod config;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

use crate::circuit::{Admission, Circuit, Outcome, Ticket, Transition};
use crate::config::Config;

/// CAS attempts before giving up on one update (only contention makes one fail).
const CAS_ATTEMPTS: usize = 64;
/// The cas a write to an absent entry carries. An absent entry accepts any cas, and an
/// entry that another thread created meanwhile has a token of its own (the host counts
/// them up from 1), so the write fails with `CasMismatch` instead of overwriting it, as
/// cas 0 (unconditional) would.
const CREATE_CAS: u32 = u32::MAX;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(CircuitRoot { shared: None }));
}}

/// The route a VM serves, learned from the first request (each plugin entry of a route
/// is its own filter, so a VM only ever sees one route).
/// The circuit this VM drives: its route's, or (`scope: upstream`) its route's upstream's.
struct Route {
    /// `route` or `upstream`: what `name` names, in logs.
    what: &'static str,
    name: String,
    key: String,
    gauge: Option<u32>,
}

struct Shared {
    config: Config,
    route: RefCell<Option<Rc<Route>>>,
}

struct CircuitRoot {
    shared: Option<Rc<Shared>>,
}

impl Context for CircuitRoot {}

impl RootContext for CircuitRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let parsed = config::parse(&bytes).and_then(|config| {
            match &config.fallback.upstream {
                // The gateway answers `aistack.upstreams.<name>` only for a configured one.
                Some(name) if !upstream_exists(name) => Err(format!(
                    "invalid configuration: fallback.upstream: the config has no upstream {name:?}"
                )),
                _ => Ok(config),
            }
        });
        match parsed {
            Ok(config) => {
                self.shared = Some(Rc::new(Shared {
                    config,
                    route: RefCell::new(None),
                }));
                true
            }
            Err(message) => {
                log(LogLevel::Error, &format!("circuit-breaker: {message}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Breaker {
            shared,
            ticket: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request: the ticket it was admitted with, until its outcome is recorded.
struct Breaker {
    shared: Rc<Shared>,
    ticket: Option<Ticket>,
}

impl Context for Breaker {
    /// A request that ends without `on_log` (dropped midway) gives its probe slot back.
    fn on_done(&mut self) -> bool {
        // The route as cached: request properties may be gone by now.
        let route = self.shared.route.borrow().clone();
        if let (Some(ticket), Some(route)) = (self.ticket.take(), route) {
            self.finish(&route, ticket, Outcome::Neutral);
        }
        true
    }
}

impl HttpContext for Breaker {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let route = self.route();
        let config = &self.shared.config;
        let now = now_ms();
        let decided = update(&route.key, |c| {
            let (admission, changed, transition) = circuit::admit(c, config, now);
            (changed, (admission, transition))
        });
        // Lost every CAS race (the circuit is busy changing): refuse rather than risk
        // letting more probes through than configured.
        let (admission, transition) = decided.unwrap_or((Admission::Refuse, None));
        if let Some(t) = transition {
            announce(&route, &t);
        }
        match admission {
            Admission::Pass(ticket) => {
                self.ticket = Some(ticket);
                Action::Continue
            }
            Admission::Refuse => match &config.fallback.upstream {
                Some(upstream) => {
                    // Not a ticket: the fallback's answer says nothing about the primary.
                    let _ = hostcalls::set_property(
                        vec!["aistack", "upstream"],
                        Some(upstream.as_bytes()),
                    );
                    Action::Continue
                }
                None => {
                    respond_fallback(&config.fallback);
                    Action::Pause
                }
            },
        }
    }

    fn on_log(&mut self) {
        let route = self.route();
        let Some(ticket) = self.ticket.take() else {
            // Answered by the fallback (or never reached this filter): nothing to record.
            // The gauge moves only with transitions (`announce`): publishing a phase read
            // earlier could land after another thread's transition and show a stale one.
            return;
        };
        let status = hostcalls::get_property(vec!["response", "code"])
            .ok()
            .flatten()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_le_bytes)
            .and_then(|n| u16::try_from(n).ok());
        let details = hostcalls::get_property(vec!["response", "code_details"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok());
        let outcome = circuit::classify(&self.shared.config, status, details.as_deref());
        self.finish(&route, ticket, outcome);
    }
}

impl Breaker {
    /// Records the outcome of the request admitted with `ticket`.
    fn finish(&self, route: &Route, ticket: Ticket, outcome: Outcome) {
        let config = &self.shared.config;
        let now = now_ms();
        let done = update(&route.key, |c| {
            circuit::record(c, config, ticket, outcome, now)
        });
        match done {
            Some(transition) => {
                if let Some(t) = transition {
                    announce(route, &t);
                }
            }
            None => log(
                LogLevel::Warn,
                &format!(
                    "circuit-breaker: {} {}: an outcome was lost to contention",
                    route.what, route.name
                ),
            ),
        }
    }

    /// The circuit of this VM (cached after the first request): its route's, or with
    /// `scope: upstream` the one of the upstream its route names.
    fn route(&self) -> Rc<Route> {
        let by_upstream = self.shared.config.scope == config::Scope::Upstream;
        let property = if by_upstream {
            "cluster_name"
        } else {
            "route_name"
        };
        let name = hostcalls::get_property(vec![property])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok());
        let mut cached = self.shared.route.borrow_mut();
        // Outside the request phases (`on_done`) the property may be gone: the cache holds.
        if let Some(route) = cached
            .as_ref()
            .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
        {
            return Rc::clone(route);
        }
        let name = name.unwrap_or_default();
        let (what, gauge, key) = if by_upstream {
            (
                "upstream",
                format!("upstream_circuit_state;upstream={name}"),
                format!("circuit:upstream:{name}"),
            )
        } else {
            (
                "route",
                format!("circuit_state;route={name}"),
                format!("circuit:{name}"),
            )
        };
        let gauge = hostcalls::define_metric(MetricType::Gauge, &gauge).ok();
        let route = Rc::new(Route {
            what,
            key,
            name,
            gauge,
        });
        set_gauge(&route, current(&route.key).phase);
        *cached = Some(Rc::clone(&route));
        route
    }
}

/// Reads the circuit at `key` (a fresh closed one when absent).
fn current(key: &str) -> Circuit {
    read(key).0
}

fn read(key: &str) -> (Circuit, Option<u32>) {
    match hostcalls::get_shared_data(key) {
        Ok((Some(bytes), cas)) => match serde_json::from_slice(&bytes) {
            Ok(circuit) => (circuit, cas),
            Err(e) => {
                log(
                    LogLevel::Warn,
                    &format!("circuit-breaker: {key}: unreadable state ({e}), starting closed"),
                );
                (Circuit::default(), cas)
            }
        },
        _ => (Circuit::default(), None),
    }
}

/// Read-modify-write with CAS: `change` edits the circuit and says whether it changed;
/// its result is returned once the write (if any) landed. `None` after [`CAS_ATTEMPTS`]
/// lost races.
fn update<T>(key: &str, mut change: impl FnMut(&mut Circuit) -> (bool, T)) -> Option<T> {
    for _ in 0..CAS_ATTEMPTS {
        let (mut circuit, cas) = read(key);
        let (changed, result) = change(&mut circuit);
        if !changed {
            return Some(result);
        }
        let Ok(bytes) = serde_json::to_vec(&circuit) else {
            return None;
        };
        let cas = cas.unwrap_or(CREATE_CAS);
        match hostcalls::set_shared_data(key, Some(&bytes), Some(cas)) {
            Ok(()) => return Some(result),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Moves the gauge and logs a transition (only the VM whose write landed gets here). The
/// gauge first: whoever sees the log line then reads the new state on `/metrics`.
fn announce(route: &Route, t: &Transition) {
    set_gauge(route, t.to);
    log(
        LogLevel::Info,
        &format!(
            "circuit-breaker: {} {}: circuit {} -> {} ({})",
            route.what,
            route.name,
            t.from.name(),
            t.to.name(),
            t.reason
        ),
    );
}

fn set_gauge(route: &Route, phase: circuit::Phase) {
    if let Some(id) = route.gauge {
        let _ = hostcalls::record_metric(id, phase.gauge());
    }
}

/// Answers the effective request with the fallback.
fn respond_fallback(fallback: &config::Fallback) {
    let mut headers: Vec<(&str, &str)> = fallback
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let body = match &fallback.body {
        Some(body) => body.clone(),
        None => {
            if !fallback.headers.iter().any(|(n, _)| n == "content-type") {
                headers.push(("content-type", "application/json"));
            }
            let request_id = hostcalls::get_property(vec!["request", "id"])
                .ok()
                .flatten()
                .and_then(|b| String::from_utf8(b).ok());
            serde_json::json!({"error": {
                "code": "circuit_open",
                "message": "the upstream is failing: the circuit breaker is open",
                "request_id": request_id,
            }})
            .to_string()
        }
    };
    let _ =
        hostcalls::send_http_response(u32::from(fallback.status), headers, Some(body.as_bytes()));
}

/// Whether the gateway's config has an upstream named `name`.
fn upstream_exists(name: &str) -> bool {
    matches!(
        hostcalls::get_property(vec!["aistack", "upstreams", name]),
        Ok(Some(_))
    )
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

//! The contenders `loadbench` can run (`--contenders`), in round order, and for each
//! AI Stack contender its committed config and what its replies must show.

use crate::contenders::{AistackSpec, Expect};
use crate::filters;

/// A contender `--contenders` may name, in round order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum ContenderId {
    /// AI Stack, a route without filters (the baseline of the filter ratios).
    Aistack,
    /// nginx (the baseline of the main table).
    Nginx,
    /// AI Stack with the built-in request-id filter on the route.
    RequestId,
    /// The smallest Pingora proxy: a floor for AI Stack.
    PingoraBare,
    /// AI Stack with bench-empty (a filter that does nothing) on the route.
    BenchEmpty,
    /// AI Stack with bench-headers (reads and sets 5 request headers) on the route.
    BenchHeaders,
    /// AI Stack with bench-body (upper-cases the response body) on the route.
    BenchBody,
    /// AI Stack with key-auth, rate-limit and tracing (every trace exported) on the route.
    Policies,
}

impl ContenderId {
    /// Every contender, in round order.
    pub const ALL: [ContenderId; 8] = [
        ContenderId::Aistack,
        ContenderId::Nginx,
        ContenderId::RequestId,
        ContenderId::PingoraBare,
        ContenderId::BenchEmpty,
        ContenderId::BenchHeaders,
        ContenderId::BenchBody,
        ContenderId::Policies,
    ];

    /// What to start for it.
    pub fn kind(self) -> Kind {
        match self {
            ContenderId::Aistack => Kind::Aistack(AISTACK),
            ContenderId::Nginx => Kind::Nginx,
            ContenderId::RequestId => Kind::Aistack(AISTACK_WASM),
            ContenderId::PingoraBare => Kind::PingoraBare,
            ContenderId::BenchEmpty => Kind::Aistack(AISTACK_EMPTY),
            ContenderId::BenchHeaders => Kind::Aistack(AISTACK_HEADERS),
            ContenderId::BenchBody => Kind::Aistack(AISTACK_BODY),
            ContenderId::Policies => Kind::Aistack(AISTACK_POLICIES),
        }
    }
}

/// Which proxy a contender is and, for AI Stack, with which config.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Aistack(AistackSpec),
    Nginx,
    PingoraBare,
}

/// The AI Stack contenders.
const AISTACK: AistackSpec = AistackSpec {
    name: "aistack",
    id: "aistack-bench",
    config: "aistack-bench.yaml",
    filter_wasm: None,
    expect: Expect::Ok,
};
const AISTACK_WASM: AistackSpec = AistackSpec {
    name: "aistack + request-id wasm",
    id: "aistack-bench-request-id",
    config: "aistack-bench-request-id.yaml",
    filter_wasm: None,
    expect: Expect::Header("x-request-id"),
};
/// The config of the benchmark-filter contenders: one filter of benches/filters/.
const FILTER_CONFIG: &str = "aistack-bench-filter.yaml";
const AISTACK_EMPTY: AistackSpec = AistackSpec {
    name: "aistack + bench-empty",
    id: "aistack-bench-empty",
    config: FILTER_CONFIG,
    filter_wasm: Some(filters::BENCH_EMPTY),
    // It changes nothing a client sees: the config loading it is the proof.
    expect: Expect::Ok,
};
const AISTACK_HEADERS: AistackSpec = AistackSpec {
    name: "aistack + bench-headers",
    id: "aistack-bench-headers",
    config: FILTER_CONFIG,
    filter_wasm: Some(filters::BENCH_HEADERS),
    expect: Expect::Header("x-bench-headers"),
};
const AISTACK_BODY: AistackSpec = AistackSpec {
    name: "aistack + bench-body",
    id: "aistack-bench-body",
    config: FILTER_CONFIG,
    filter_wasm: Some(filters::BENCH_BODY),
    expect: Expect::Body(b"OK"),
};
const AISTACK_POLICIES: AistackSpec = AistackSpec {
    name: "aistack + key-auth, rate-limit, tracing",
    id: "aistack-bench-policies",
    config: "aistack-bench-policies.yaml",
    filter_wasm: None,
    // 401 without a key; with the key the benchmark makes, 200 and the limit's headers.
    expect: Expect::KeyAuth,
};

//! Configuration: the YAML surface ([`surface`]), loading with `${ENV}`
//! interpolation ([`load`]), and the validated model ([`model`]). Every error
//! names file, line, column and key ([`error`]).

mod backend;
pub mod cidr;
pub mod error;
pub mod limits;
pub mod load;
pub mod model;
pub mod redact;
pub mod surface;
pub mod tls;
pub mod units;
pub mod upstream;

pub use error::{ConfigError, ConfigErrors};
pub use load::{load_file, load_str};
pub use model::GatewayConfig;

#[cfg(test)]
mod backend_tests;
#[cfg(test)]
mod tests;

//! End-to-end tests: the real `aistack` binary over real HTTP. One test binary
//! with modules (one build, one link). Each test starts its own processes on
//! free ports with a temporary data directory.

mod bad_input;
mod skeleton;

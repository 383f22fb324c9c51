//! rbuild-oci: the OCI and Docker types every other crate names — content
//! digests ([`Digest`]), image references ([`mod@reference`]), platforms
//! ([`Platform`]) and the image config with Docker's fields
//! ([`ImageConfig`]) — and the small formats several crates share: times
//! as images, HTTP and Docker's tables write them ([`mod@time`]), file
//! names as lossless text whatever their bytes ([`mod@path_text`]) and
//! error chains on one line ([`mod@error_chain`]). Pure data and parsing:
//! no I/O (reading the clock aside).
//!
//! Depends on no other rbuild crate; every other crate may depend on it, so
//! a helper two crates need lives here once rather than in each.

#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::disallowed_methods)]

pub mod digest;
pub mod error_chain;
pub mod image_config;
pub mod path_text;
pub mod platform;
pub mod reference;
pub mod time;

pub use digest::Digest;
pub use error_chain::{error_chain, error_chain_line};
pub use image_config::ImageConfig;
pub use platform::Platform;

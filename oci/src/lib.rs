//! rbuild-oci: the OCI and Docker types every other crate names — content
//! digests ([`Digest`]), image references ([`mod@reference`]) and platforms
//! ([`Platform`]). Pure data and parsing: no I/O.
//!
//! Depends on no other rbuild crate; every other crate may depend on it.

#![forbid(unsafe_code)]

pub mod digest;
pub mod platform;
pub mod reference;

pub use digest::Digest;
pub use platform::Platform;

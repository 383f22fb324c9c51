//! rbuild-oci: the OCI and Docker types every other crate names — content
//! digests ([`Digest`]), image references ([`mod@reference`]), platforms
//! ([`Platform`]) and the image config with Docker's fields
//! ([`ImageConfig`]). Pure data and parsing: no I/O.
//!
//! Depends on no other rbuild crate; every other crate may depend on it.

#![forbid(unsafe_code)]

pub mod digest;
pub mod image_config;
pub mod platform;
pub mod reference;

pub use digest::Digest;
pub use image_config::ImageConfig;
pub use platform::Platform;

//! A read-only merged view of a stack of layer snapshots (overlay format:
//! a 0/0 character device is a whiteout, `trusted.overlay.opaque=y` or
//! `user.overlay.opaque=y` marks an opaque directory), as overlayfs would
//! show it, without mounting anything.

use std::path::PathBuf;

/// A stack of snapshot directories, top first (overlay's lowerdir order).
#[derive(Debug, Clone)]
pub struct LayeredFs {
    layers: Vec<PathBuf>,
}

impl LayeredFs {
    /// The view of `layers`, top first. An empty stack is an empty tree.
    pub fn new(layers: Vec<PathBuf>) -> LayeredFs {
        LayeredFs { layers }
    }

    /// The snapshot directories, top first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }
}

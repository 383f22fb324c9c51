//! The image store: an OCI image layout under the root, unpacked layer
//! snapshots, atomic writes, locking.

//! The sandbox: runs a process in fresh namespaces on an overlayfs root.

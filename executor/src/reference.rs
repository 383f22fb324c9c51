//! Image references parsed like Docker's (`busybox` →
//! `docker.io/library/busybox:latest`).

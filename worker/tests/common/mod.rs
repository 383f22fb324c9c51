//! What the worker's test binaries share: reading the layers a step made.
#![allow(dead_code)]

use std::io::Read;

use rbuild_store::{LayerInfo, Store};

/// Entry names of a layer blob, directories ending in `/`.
pub fn entries(store: &Store, layer: &LayerInfo) -> Vec<String> {
    let mut a = tar::Archive::new(store.open_layer(layer).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let mut name = e.path().unwrap().to_string_lossy().into_owned();
            if e.header().entry_type().is_dir() && !name.ends_with('/') {
                name.push('/');
            }
            name
        })
        .collect()
}

/// The bytes of a layer blob.
pub fn layer_bytes(store: &Store, layer: &LayerInfo) -> Vec<u8> {
    let mut v = Vec::new();
    store
        .open_layer(layer)
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

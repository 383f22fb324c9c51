//! Finding an image by what a user typed (a name, `name:tag`,
//! `name@sha256:…`, an image ID or a unique ID prefix), by a parsed
//! reference, or by an image ID, the way Docker does.

use std::collections::BTreeSet;

use rbuild_oci::Digest;
use rbuild_oci::reference::ImageRef;

use crate::layout::ANNOTATION_REF_NAME;
use crate::{Image, Result, Store, StoreError};

impl Store {
    /// Finds an image by what a user typed (`busybox`, `name:tag`,
    /// `name@sha256:…`, a full image ID `sha256:…`, or a unique ID prefix),
    /// by a parsed [`ImageRef`], or by an image ID [`Digest`].
    pub fn resolve<S: ImageSelector + ?Sized>(&self, what: &S) -> Result<Image> {
        match what.selector() {
            Selector::Text(text) => self.resolve_text(text),
            Selector::Ref(r) => self.resolve_ref(r),
            Selector::Id(id) => self.resolve_text(&id.to_string()),
        }
    }

    fn resolve_text(&self, text: &str) -> Result<Image> {
        let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
        let is_hex = !hex_part.is_empty()
            && hex_part.len() <= 64
            && hex_part
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        // As docker: a name that is a tag wins over an ID prefix (`b` is
        // the image tagged `b`, even when another image's ID starts with
        // b); a full ID or `sha256:` is always an ID.
        if is_hex
            && !text.starts_with("sha256:")
            && hex_part.len() < 64
            && let Ok(r) = ImageRef::parse(text)
            && let Ok(image) = self.resolve_ref(&r)
        {
            return Ok(image);
        }
        if is_hex {
            let images = self.scan_images()?.images;
            let mut ids: Vec<&Image> = images
                .iter()
                .filter(|i| i.id.hex().starts_with(hex_part))
                .collect();
            ids.dedup_by_key(|i| i.id);
            let distinct: BTreeSet<Digest> = ids.iter().map(|i| i.id).collect();
            match distinct.len() {
                1 => return Ok(ids[0].clone()),
                0 if text.starts_with("sha256:") || hex_part.len() == 64 => {
                    return Err(StoreError::NotFound {
                        reference: text.to_string(),
                    });
                }
                0 => {}
                count => {
                    return Err(StoreError::Ambiguous {
                        prefix: text.to_string(),
                        count,
                    });
                }
            }
        }
        let r = ImageRef::parse(text)?;
        self.resolve_ref(&r).map_err(|e| match e {
            StoreError::NotFound { .. } => StoreError::NotFound {
                reference: text.to_string(),
            },
            e => e,
        })
    }

    /// [`Store::resolve`] for one platform: of an image index, that
    /// platform's image (`NoMatchingPlatform` when it has none); a
    /// single-platform image must be of that platform
    /// (`PlatformMismatch`). `None` is [`Store::resolve`].
    pub fn resolve_for<S: ImageSelector + ?Sized>(
        &self,
        what: &S,
        platform: Option<&rbuild_oci::Platform>,
    ) -> Result<Image> {
        let image = self.resolve(what)?;
        let Some(p) = platform else {
            return Ok(image);
        };
        self.for_platform(image, p)
    }

    /// [`Store::resolve_ref`] for one platform (see [`Store::resolve_for`]).
    pub fn resolve_ref_for(
        &self,
        r: &ImageRef,
        platform: Option<&rbuild_oci::Platform>,
    ) -> Result<Image> {
        let image = self.resolve_ref(r)?;
        let Some(p) = platform else {
            return Ok(image);
        };
        self.for_platform(image, p)
    }

    /// `image` as `p`: of an image index, that platform's image; a
    /// single-platform image when it is of `p` (`PlatformMismatch`
    /// otherwise).
    pub fn for_platform(&self, image: Image, p: &rbuild_oci::Platform) -> Result<Image> {
        let label = image
            .tags
            .first()
            .map(|t| t.familiar())
            .unwrap_or_else(|| image.id.to_string());
        if let Some(index) = &image.index {
            let desc = index.descriptor();
            return self.load_from_index(&desc, image.tags.clone(), Some(p));
        }
        let c = &image.config;
        let arch_ok = c.architecture.is_empty()
            || (c.architecture == p.architecture
                && (p.variant.is_none()
                    || c.variant.is_none()
                    || c.variant == p.variant
                    || (p.architecture == "arm64"
                        && c.variant.as_deref().is_none_or(|v| v == "v8")
                        && p.variant.as_deref().is_none_or(|v| v == "v8"))));
        if (!c.os.is_empty() && c.os != p.os) || !arch_ok {
            let mut actual = format!("{}/{}", c.os, c.architecture);
            if let Some(v) = &c.variant {
                actual = format!("{actual}/{v}");
            }
            return Err(StoreError::PlatformMismatch {
                reference: label,
                wanted: p.to_string(),
                actual,
            });
        }
        Ok(image)
    }

    /// Finds the image a normalized reference names.
    pub fn resolve_ref(&self, r: &ImageRef) -> Result<Image> {
        if r.digest().is_none() {
            // By tag: one index read and the one image's blobs, not every
            // image in the store.
            let index = self.read_index()?;
            let name = r.to_string();
            let Some(desc) = index
                .manifests
                .iter()
                .find(|d| d.annotations.get(ANNOTATION_REF_NAME) == Some(&name))
            else {
                return Err(StoreError::NotFound {
                    reference: r.familiar(),
                });
            };
            let tags = index
                .manifests
                .iter()
                .filter(|d| d.digest == desc.digest)
                .filter_map(|d| d.annotations.get(ANNOTATION_REF_NAME))
                .filter_map(|n| ImageRef::parse(n).ok())
                .collect();
            return self.load_image(desc, tags);
        }
        let images = self.scan_images()?.images;
        let found = images.into_iter().find(|img| match (r.digest(), r.tag()) {
            (Some(d), _) => {
                (img.manifest_digest == d || img.top_digest() == d)
                    && img.tags.iter().any(|t| t.repository() == r.repository())
            }
            (None, _) => img.tags.iter().any(|t| t == r),
        });
        found.ok_or_else(|| StoreError::NotFound {
            reference: r.familiar(),
        })
    }
}

/// What [`Store::resolve`] accepts: `str`/`String` (as typed by a user),
/// [`ImageRef`], or an image ID [`Digest`].
pub trait ImageSelector {
    /// How to look the image up.
    fn selector(&self) -> Selector<'_>;
}

/// One way of naming an image; see [`ImageSelector`].
#[derive(Debug, Clone, Copy)]
pub enum Selector<'a> {
    Text(&'a str),
    Ref(&'a ImageRef),
    Id(&'a Digest),
}

impl ImageSelector for str {
    fn selector(&self) -> Selector<'_> {
        Selector::Text(self)
    }
}

impl ImageSelector for String {
    fn selector(&self) -> Selector<'_> {
        Selector::Text(self)
    }
}

impl ImageSelector for ImageRef {
    fn selector(&self) -> Selector<'_> {
        Selector::Ref(self)
    }
}

impl ImageSelector for Digest {
    fn selector(&self) -> Selector<'_> {
        Selector::Id(self)
    }
}

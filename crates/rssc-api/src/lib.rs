//! rssc's API: the custom resources of `scaleset.actions.github.com/v1alpha1`, the names and
//! constants every component shares, and the CRD manifests generated from them.

pub mod consts;
pub mod crd;
pub mod listener_config;
pub mod names;
pub mod schema;
pub mod v1alpha1;

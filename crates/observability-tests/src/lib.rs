//! Checks that the dashboards and alerting rules shipped in the controller chart use only
//! metrics and labels the controller and the listener really expose (and, for the fleet
//! dashboard, that ARC's listeners expose too), that they evaluate as meant on scrapes of the
//! binaries' registries, and that every metric is documented.

pub mod check;
pub mod eval;
pub mod exposed;
pub mod exposition;
pub mod scenario;
pub mod sources;

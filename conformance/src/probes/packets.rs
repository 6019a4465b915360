//! Probe cases of this module's chapters (see the table in [`super`]).

use crate::catalog::ProbeCase;

/// The probe cases of this module, in order.
pub static CASES: &[ProbeCase] = &[];

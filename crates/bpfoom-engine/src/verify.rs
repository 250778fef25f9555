//! The bpfoom verifier as the attach gate.

use bpfoom_obj::{Object, StructOpsInstance};
use bpfoom_verifier::{verify_object, Options};

use crate::{ContractCheck, PolicyCheck};

/// Runs [`ContractCheck`], then [`bpfoom_verifier`] over every program of
/// the object's struct_ops instances (a policy object is loaded whole, as
/// libbpf does, so one unsafe instance rejects the object).
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    /// Verifier options (log level, complexity budget).
    pub options: Options,
}

impl PolicyCheck for Verifier {
    fn check(&self, object: &Object, instance: &StructOpsInstance) -> Result<(), String> {
        ContractCheck.check(object, instance)?;
        verify_object(object, &self.options)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

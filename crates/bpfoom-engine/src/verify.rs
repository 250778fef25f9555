//! The bpfoom verifier as the attach gate.

use bpfoom_obj::{Object, StructOpsInstance};
use bpfoom_verifier::{verify_object, Options};

use crate::{CheckError, CheckReport, ContractCheck, PolicyCheck};

/// Runs [`ContractCheck`], then [`bpfoom_verifier`] over every program of
/// the object's struct_ops instances (a policy object is loaded whole, as
/// libbpf does, so one unsafe instance rejects the object).
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    /// Verifier options (log level, complexity budget).
    pub options: Options,
}

impl PolicyCheck for Verifier {
    fn check(&self, object: &Object, instance: &StructOpsInstance) -> Result<(), CheckError> {
        self.check_report(object, instance).map(|_| ())
    }

    /// Also hands the VM the verifier's PROBE_MEM loads, so that walking a
    /// NULL kernel pointer reads 0 as in Linux instead of faulting.
    fn check_report(
        &self,
        object: &Object,
        instance: &StructOpsInstance,
    ) -> Result<CheckReport, CheckError> {
        ContractCheck.check(object, instance)?;
        let reports = verify_object(object, &self.options)?;
        let mut out = CheckReport::default();
        for r in reports {
            if let Some(idx) = object.programs.iter().position(|p| p.name == r.program) {
                out.probe_mem.insert(idx, r.report.probe_mem);
            }
        }
        Ok(out)
    }
}

//! The host TSC frequency, passed to the guest as `tsc_early_khz=`.
//!
//! Under TCG the guest's TSC is the host's, and the guest kernel's early TSC calibration
//! against the emulated PIT is unreliable (10–20 % of boots hang). Telling it the frequency
//! skips the calibration.

use crate::VmmError;

/// Reads the host TSC frequency in kHz from `/proc/cpuinfo`.
pub fn host_tsc_khz() -> Result<u64, VmmError> {
    let text = std::fs::read_to_string("/proc/cpuinfo")
        .map_err(|e| VmmError::Tsc(format!("reading /proc/cpuinfo: {e}")))?;
    tsc_khz_from_cpuinfo(&text).ok_or_else(|| {
        VmmError::Tsc("no `model name ... @ X GHz` or `cpu MHz` line in /proc/cpuinfo".into())
    })
}

/// Extracts the TSC frequency (kHz) from the text of `/proc/cpuinfo` of the first CPU.
///
/// Prefers the nominal frequency in the model name (`... @ 2.30GHz`: the TSC runs at the
/// nominal rate on invariant-TSC CPUs), else `cpu MHz` (which, in a VM or with frequency
/// scaling off, is the TSC rate).
pub fn tsc_khz_from_cpuinfo(text: &str) -> Option<u64> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
    };
    if let Some(model) = field("model name") {
        if let Some((_, freq)) = model.rsplit_once('@') {
            let freq = freq.trim();
            if let Some(ghz) = freq
                .strip_suffix("GHz")
                .and_then(|g| g.trim().parse::<f64>().ok())
            {
                if ghz > 0.0 {
                    return Some((ghz * 1_000_000.0).round() as u64);
                }
            }
        }
    }
    let mhz: f64 = field("cpu MHz")?.parse().ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_name_frequency_wins() {
        let t = "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz\ncpu MHz\t\t: 2112.003\n";
        assert_eq!(tsc_khz_from_cpuinfo(t), Some(1_900_000));
    }

    #[test]
    fn cpu_mhz_when_model_has_no_frequency() {
        let t = "model name\t: Intel(R) Xeon(R) Processor\ncpu MHz\t\t: 2300.000\n";
        assert_eq!(tsc_khz_from_cpuinfo(t), Some(2_300_000));
        let t = "model name\t: AMD EPYC 7B13\ncpu MHz\t\t: 2449.998\n";
        assert_eq!(tsc_khz_from_cpuinfo(t), Some(2_449_998));
    }

    #[test]
    fn nothing_usable() {
        assert_eq!(tsc_khz_from_cpuinfo("processor\t: 0\n"), None);
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz\t: 0.000\n"), None);
    }

    #[test]
    fn this_host_has_a_frequency() {
        let khz = host_tsc_khz().expect("host TSC");
        assert!(khz > 100_000, "{khz} kHz");
    }
}

//! The rules every layer checks the same way: the shape of a capsule id and a template name,
//! and the vCPU and memory bounds of a capsule. The control plane checks a client's request
//! with them; a host checks every call with them again.

use std::ops::RangeInclusive;

/// vCPUs a capsule may have.
pub const VCPUS: RangeInclusive<u32> = 1..=32;

/// Memory in MiB a capsule may have.
pub const MEMORY_MB: RangeInclusive<u32> = 128..=65_536;

/// Longest template name.
pub const TEMPLATE_NAME_MAX: usize = 64;

/// Length of the random part of a capsule id.
pub const CAPSULE_ID_RANDOM: usize = 25;

/// True for a well-formed capsule id: `cl-` and 25 chars of `[0-9a-z]`.
pub fn is_capsule_id(id: &str) -> bool {
    id.len() == 3 + CAPSULE_ID_RANDOM
        && id.starts_with("cl-")
        && id[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// True for a valid template name: `^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$` (never `.`, `..` or
/// a path).
pub fn is_template_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= TEMPLATE_NAME_MAX
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `Err` naming the bound a capsule's shape breaks (any integer: a client's value is
/// judged before it is narrowed).
pub fn check_shape(vcpus: i64, memory_mb: i64) -> Result<(), String> {
    let within = |r: &RangeInclusive<u32>, v: i64| u32::try_from(v).is_ok_and(|v| r.contains(&v));
    if !within(&VCPUS, vcpus) {
        return Err(format!(
            "vcpus must be between {} and {} (got {vcpus})",
            VCPUS.start(),
            VCPUS.end()
        ));
    }
    if !within(&MEMORY_MB, memory_mb) {
        return Err(format!(
            "memory_mb must be between {} and {} (got {memory_mb})",
            MEMORY_MB.start(),
            MEMORY_MB.end()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capsule_ids() {
        assert!(is_capsule_id("cl-0123456789abcdefghijklmno"));
        for bad in [
            "",
            "cl-",
            "cl-0123456789abcdefghijklmn",
            "cl-0123456789abcdefghijklmnop",
            "cl-0123456789ABCDEFGHIJKLMNO",
            "xx-0123456789abcdefghijklmno",
            "cl-0123456789abcdefghijklm/o",
        ] {
            assert!(!is_capsule_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn template_names() {
        for good in ["minimal", "a", "snap-1.2_x", &"a".repeat(64)] {
            assert!(is_template_name(good), "{good:?}");
        }
        for bad in ["", ".", "..", "-a", "a/b", "a b", &"a".repeat(65), "é"] {
            assert!(!is_template_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn shapes() {
        assert!(check_shape(1, 128).is_ok());
        assert!(check_shape(32, 65_536).is_ok());
        assert!(check_shape(0, 512).unwrap_err().contains("vcpus"));
        assert!(check_shape(33, 512).unwrap_err().contains("vcpus"));
        assert!(check_shape(1, 127).unwrap_err().contains("memory_mb"));
        assert!(check_shape(1, 65_537).unwrap_err().contains("memory_mb"));
        assert!(check_shape(-1, 512).unwrap_err().contains("got -1"));
        assert!(check_shape(1, i64::MAX).unwrap_err().contains("memory_mb"));
    }
}

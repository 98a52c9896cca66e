//! wrenn-vmm (placeholder; being written).

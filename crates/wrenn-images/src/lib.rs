//! wrenn-images (placeholder; being written).

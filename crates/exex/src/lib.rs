//! kiln execution extension (next milestone): chain notifications (committed / reorged /
//! reverted) -> hotness ranking -> background compilation -> artifact cache.

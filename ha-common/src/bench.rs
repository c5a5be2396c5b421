//! The throughput benchmark's map types (its own eBPF object, `ha-bench`, and
//! `cargo xtask bench throughput`). Same rules as [`crate::abi`]: `#[repr(C)]`, fixed-width
//! fields, explicit padding, size assertions.

/// 8-byte words in a [`BenchTemplate`]: room for Ethernet + outer IPv6 + inner IPv6 + UDP.
pub const TEMPLATE_CHUNKS: usize = 16;

/// The headers the generator writes at the start of every frame it sends.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchTemplate {
    /// How many of `words` to write.
    pub chunks: u32,
    pub _pad: u32,
    /// The first `chunks * 8` bytes of the frame, as they appear on the wire.
    pub words: [u64; TEMPLATE_CHUNKS],
}

/// 16 bytes the sink compares at `offset`, under `mask`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchWindow {
    pub offset: u32,
    pub _pad: u32,
    pub value: [u64; 2],
    pub mask: [u64; 2],
}

/// Windows per expectation: each header's length, next header and hop limit, and its full
/// source and destination addresses.
pub const EXPECT_WINDOWS: usize = 6;

/// What the frame the device under test delivers to the sink must look like.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchExpect {
    pub frame_len: u32,
    pub _pad: u32,
    pub windows: [BenchWindow; EXPECT_WINDOWS],
}

/// Sink counters (per CPU): every frame, frames as expected, anything else.
pub const SINK_FRAMES: u32 = 0;
pub const SINK_EXPECTED: u32 = 1;
pub const SINK_OTHER: u32 = 2;
pub const SINK_COUNTERS: u32 = 3;

const _: () = assert!(core::mem::size_of::<BenchTemplate>() == 8 + 8 * TEMPLATE_CHUNKS);
const _: () = assert!(core::mem::size_of::<BenchWindow>() == 40);
const _: () = assert!(core::mem::size_of::<BenchExpect>() == 8 + 40 * EXPECT_WINDOWS);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers and arrays, no padding the compiler chose.
    unsafe impl aya::Pod for super::BenchTemplate {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BenchExpect {}
}

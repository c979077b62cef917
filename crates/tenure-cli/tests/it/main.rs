//! The `tenure` binary's integration tests, one test binary (each links the whole engine:
//! one link instead of one per file). They run the real binary on real files.

mod cli;
mod cluster;
mod clv;
mod e2e;
mod health;
mod log;
mod serve;
mod stats;
mod stripe;

/// A copy of the binary `bin` at `to` that is another build: its GNU build id (by which
/// saved state is kept) with one byte changed, as an upgrade's would differ.
pub fn other_build(bin: &std::path::Path, to: &std::path::Path) {
    let mut bytes = std::fs::read(bin).unwrap();
    // The note: name size 4, a description's size, type 3 (NT_GNU_BUILD_ID), "GNU\0".
    let at = bytes
        .windows(16)
        .position(|w| w[..4] == [4, 0, 0, 0] && w[8..] == [3, 0, 0, 0, b'G', b'N', b'U', 0])
        .expect("the binary has a GNU build id note");
    bytes[at + 16] ^= 0xff;
    std::fs::write(to, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

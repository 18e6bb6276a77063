//! Which build of the binaries a run measured: the target they were compiled for and whether
//! they are statically linked. The images ship static musl binaries, while a host build links
//! the system's C library dynamically, and resident memory differs by the shared library's
//! pages (and the allocator), so the page says which one its figures are for.

use std::path::Path;

/// `<target>, statically linked` or `host build, dynamically linked`, for the binaries in
/// `bin_dir` (Cargo's `target/<triple>/<profile>` or `target/<profile>`).
pub fn describe(bin_dir: &Path, binary: &str) -> String {
    let target = target_of(bin_dir).unwrap_or_else(|| "host build".into());
    let linking = match std::fs::read(bin_dir.join(binary))
        .ok()
        .as_deref()
        .and_then(is_static)
    {
        Some(true) => ", statically linked",
        Some(false) => ", dynamically linked",
        None => "",
    };
    format!("{target}{linking}")
}

/// The target triple of a `target/<triple>/<profile>` directory; `None` for the host's
/// `target/<profile>`.
fn target_of(bin_dir: &Path) -> Option<String> {
    let parent = bin_dir.parent()?.file_name()?.to_str()?;
    (parent.matches('-').count() >= 2).then(|| parent.to_owned())
}

/// Whether an ELF executable runs without a dynamic loader (it has no `PT_INTERP` program
/// header); `None` if `elf` is not a 64-bit little-endian ELF file.
fn is_static(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let phoff = usize::try_from(u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let entry_size = usize::from(u16_at(0x36)?);
    let entries = usize::from(u16_at(0x38)?);
    for i in 0..entries {
        let at = phoff.checked_add(i.checked_mul(entry_size)?)?;
        let kind = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        if kind == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-bit little-endian ELF header followed by program headers of `kinds`.
    fn elf(kinds: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&u16::try_from(kinds.len()).unwrap().to_le_bytes());
        for kind in kinds {
            let mut header = vec![0u8; 56];
            header[..4].copy_from_slice(&kind.to_le_bytes());
            bytes.extend(header);
        }
        bytes
    }

    #[test]
    fn a_loader_header_means_dynamic_linking() {
        assert_eq!(is_static(&elf(&[6, 3, 1, 2])), Some(false));
        assert_eq!(is_static(&elf(&[6, 1, 1, 2])), Some(true));
        assert_eq!(is_static(b"#!/bin/sh\n"), None);
        let mut cut = elf(&[6, 3]);
        cut.truncate(100);
        assert_eq!(is_static(&cut), None, "program headers cut short");
    }

    #[test]
    fn this_test_binary_is_read_as_what_it_is() {
        let exe = std::env::current_exe().unwrap();
        let linked_statically = is_static(&std::fs::read(&exe).unwrap());
        // Test binaries of a musl target are static, of a GNU target dynamic.
        assert_eq!(linked_statically, Some(cfg!(target_env = "musl")));
    }

    #[test]
    fn the_target_comes_from_cargos_directory_layout() {
        assert_eq!(
            target_of(Path::new("/w/target/x86_64-unknown-linux-musl/release")).as_deref(),
            Some("x86_64-unknown-linux-musl")
        );
        assert_eq!(target_of(Path::new("/w/target/release")), None);
        assert_eq!(
            describe(Path::new("/nowhere/target/release"), "rssc-listener"),
            "host build"
        );
    }
}

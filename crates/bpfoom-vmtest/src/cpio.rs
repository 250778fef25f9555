//! A writer for the cpio "newc" format, the one the kernel unpacks as an
//! initramfs (`Documentation/driver-api/early-userspace/buffer-format.rst`).

/// An in-memory newc archive. Parent directories must be added before
/// their entries, as the kernel creates them in archive order.
#[derive(Default)]
pub struct Archive {
    buf: Vec<u8>,
    ino: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let name = name.trim_start_matches('/');
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.entry(path, S_IFDIR | 0o755, &[]);
        self
    }

    /// Adds a regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.entry(path, S_IFREG | (perm & 0o7777), data);
        self
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(path, S_IFLNK | 0o777, target.as_bytes());
        self
    }

    /// Ends the archive with its trailer and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, &[]);
        // The kernel reads the initramfs in 512-byte blocks at most; a
        // block-aligned end keeps concatenation with other archives valid.
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(b: &[u8], at: usize, i: usize) -> u32 {
        let s = std::str::from_utf8(&b[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap_or("x");
        u32::from_str_radix(s, 16).unwrap_or(u32::MAX)
    }

    #[test]
    fn layout_matches_newc() {
        let mut a = Archive::new();
        a.dir("/bin")
            .file("/bin/x", 0o755, b"hello")
            .symlink("sh", "bin/x");
        let b = a.finish();
        assert_eq!(b.len() % 512, 0);
        assert_eq!(&b[..6], b"070701");
        // First entry: directory "bin".
        assert_eq!(field(&b, 0, 1), S_IFDIR | 0o755);
        assert_eq!(field(&b, 0, 11), 4);
        assert_eq!(&b[110..114], b"bin\0");
        // Second entry starts 4-aligned after the name (110 + 4 = 114 -> 116).
        let second = 116;
        assert_eq!(&b[second..second + 6], b"070701");
        assert_eq!(field(&b, second, 6), 5);
        assert_eq!(field(&b, second, 1), S_IFREG | 0o755);
        // name "bin/x\0" (6 bytes) at 226 -> data at 232 (aligned).
        assert_eq!(&b[second + 110..second + 116], b"bin/x\0");
        assert_eq!(&b[second + 116..second + 121], b"hello");
        let text = String::from_utf8_lossy(&b);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("sh\0"));
    }
}

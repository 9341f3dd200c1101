//! A temporary folder for a test, removed when the test ends (whether it passes or fails), and
//! real faults to put under it: a small tmpfs that can be filled up or remounted read-only.
//! Mounting happens only inside the mount namespace of `scripts/private-mounts.sh` (which `make
//! test-rust` runs the tests in), so the machine's own mounts are never touched.

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub(crate) struct TestDir {
    path: PathBuf,
    mounted: bool,
}

impl TestDir {
    /// A new, empty folder named after the test and this process.
    pub(crate) fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("lrb-test-{name}-{}", std::process::id()));
        // A tmpfs a killed run of the same PID left (only ever inside its own namespace).
        let _ = Command::new("umount").arg("-l").arg(&path).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temporary folder");
        TestDir { path, mounted: false }
    }

    /// A new folder that is a tmpfs of `bytes` bytes of its own.
    pub(crate) fn tmpfs(name: &str, bytes: u64) -> Self {
        assert!(in_private_namespace(), "run under scripts/private-mounts.sh (a mount namespace of its own)");
        let mut dir = TestDir::new(name);
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=0700"), "tmpfs"])
            .arg(&dir.path));
        dir.mounted = true;
        dir
    }

    /// Fills the tmpfs up until not one block is free (with a file named `filler`).
    pub(crate) fn fill(&self) {
        assert!(self.mounted, "only a tmpfs is filled");
        let _ =
            Command::new("dd").args(["if=/dev/zero", "bs=4096"]).arg(format!("of={}", self.file("filler"))).output();
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(&self.path).output().expect("df");
        let avail = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").trim().to_string();
        assert_eq!(avail, "0", "the tmpfs still has room");
    }

    /// Frees what [`TestDir::fill`] took.
    pub(crate) fn unfill(&self) {
        std::fs::remove_file(self.file("filler")).expect("remove the filler");
    }

    /// Remounts the tmpfs read-only (`true`) or writable again.
    pub(crate) fn read_only(&self, read_only: bool) {
        assert!(self.mounted, "only a tmpfs is remounted");
        let mode = if read_only { "remount,ro" } else { "remount,rw" };
        run(Command::new("mount").args(["-o", mode]).arg(&self.path));
    }

    /// The folder's path, as text.
    pub(crate) fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// The path of `name` in the folder, as text.
    pub(crate) fn file(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }
}

fn in_private_namespace() -> bool {
    let ns = |p: &str| std::fs::read_link(p).ok();
    std::env::var("LRB_PRIVATE_MOUNTS").as_deref() == Ok("1") && ns("/proc/self/ns/mnt") != ns("/proc/1/ns/mnt")
}

fn run(command: &mut Command) {
    let status = command.status().expect("run a command");
    assert!(status.success(), "{command:?}: {status}");
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tmpfs_fills_up_and_goes_read_only_for_real() {
        let dir = TestDir::tmpfs("faults", 256 * 1024);
        dir.fill();
        let full = std::fs::write(dir.file("x"), vec![b'x'; 8192]).expect_err("no room");
        assert_eq!(full.raw_os_error(), Some(libc::ENOSPC));
        dir.unfill();
        dir.read_only(true);
        let ro = std::fs::write(dir.file("x"), b"x").expect_err("read-only");
        assert_eq!(ro.raw_os_error(), Some(libc::EROFS));
        dir.read_only(false);
        std::fs::write(dir.file("x"), b"x").expect("writable again");
    }
}

//! A temporary folder for a test, removed when the test ends (whether it passes or fails).

use std::path::PathBuf;

pub(crate) struct TestDir(PathBuf);

impl TestDir {
    /// A new, empty folder named after the test and this process.
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lrb-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        TestDir(dir)
    }

    /// The folder's path, as text.
    pub(crate) fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }

    /// The path of `name` in the folder, as text.
    pub(crate) fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

//! Golden files for tests: `check` compares output with a file (a path relative to this
//! crate's directory), and rewrites the file instead when `UPDATE_GOLDEN=1` is set (review
//! the diff before committing it).

use std::path::PathBuf;

pub fn check(file: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        actual == expected,
        "{file} differs from its golden file.\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

//! The upstream Go tools the tests run (kstatus, promtool, helm, the promql helper), built
//! once and cached across runs by scripts/gotool.sh.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use super::repo;

/// The path of tool `name` (scripts/gotools/NAME), building it the first time.
pub fn gotool(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let out = Command::new(repo().join("scripts/gotool.sh"))
        .arg(name)
        .output()
        .expect("running scripts/gotool.sh");
    assert!(
        out.status.success(),
        "scripts/gotool.sh {name} failed (it needs Go and, the first time, the Go module \
         proxy):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    built.insert(name.to_owned(), path.clone());
    path
}
